"""What the field officer's app (``/field``) uses beyond the incident API: photos, places, its live feed.

* ``POST /api/v1/media`` (multipart ``file``, optional ``taken_at``, ``lat``, ``lon``, ``accuracy_m``): a photo
  checked (:func:`dispatcher.media.inspect_photo`), stored content-addressed with its thumbnail, its metadata
  recorded; ``201`` the first time, ``200`` with the same body for the same bytes again.
* ``GET /api/v1/media/{media_id}`` and ``.../thumbnail``: the bytes, to whoever uploaded the photo or may read
  an incident that references it (the policy's reading scope, :func:`gateways.policy.scope_refusal`); anybody
  else gets ``404``, as for a photo that does not exist.
* ``GET /api/v1/places/{code}``: a place (龙游通), its contact masked by role, its incidents (open first, 20).
* ``POST /api/v1/places/decode`` (multipart ``file``): the place code in a photo of its QR code, read here.
* ``GET /api/v1/me/tasks``: the officer's (or its team's) tasks as the phone's list draws them, a summary of
  each (:func:`gateways.tasks.task_summary`), the most urgent first.
* ``/ws/field``: the board's event feed (:mod:`gateways.board`) filtered to the incidents the officer, or its
  team, holds an assignment of, each followed by a ``tasks`` frame: the incident's tasks as they stand.

docs/field.md ("API the app uses") is the contract.
"""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import UTC
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, WebSocket
from fastapi.responses import Response
from pydantic import AwareDatetime

from dispatcher.accounts import Account
from dispatcher.core.incidents import Incident
from dispatcher.field_store import MediaRecord, Place
from dispatcher.hub import Hub, IncidentNotFound
from dispatcher.media import DEFAULT_MAX_PIXELS, MediaVariant, PhotoRefused, inspect_photo, is_media_id
from dispatcher.store import IncidentFilter
from dispatcher.values import Latitude, Longitude, Seq
from gateways import board
from gateways.api import HubDep, _may_read, get_hub, json_response
from gateways.auth import directory_of, principal_of, ws_subprotocol
from gateways.compression import json_answer
from gateways.context import context_of
from gateways.evidence import field_store, township_id
from gateways.privacy import SEES_ALL, MaskedSocket, mask_phone, needs_masking
from gateways.schemas import PlaceCode
from gateways.tasks import holds, officer_teams, task_summaries, team_names

router = APIRouter(prefix="/api/v1", tags=["field"])
feed_router = APIRouter()

IMMUTABLE = "private, max-age=31536000, immutable"
UPLOAD_CHUNK = 1 << 16
#: The routes that take a photo: their body may be a photo (``DISPATCHER_MEDIA_MAX_BYTES``) and the form around it.
UPLOAD_PATHS = ("/api/v1/media", "/api/v1/places/decode")
UPLOAD_OVERHEAD = 64 * 1024


def _media_json(record: MediaRecord) -> dict[str, Any]:
    return {
        "id": record.sha256,
        "content_type": record.content_type,
        "bytes": record.bytes,
        "width": record.width,
        "height": record.height,
        "taken_at": record.client_taken_at,
        "lat": record.client_lat,
        "lon": record.client_lon,
        "accuracy_m": record.client_accuracy_m,
        "exif_taken_at": record.exif_taken_at,
        "exif_lat": record.exif_lat,
        "exif_lon": record.exif_lon,
        "url": f"/api/v1/media/{record.sha256}",
        "thumbnail_url": f"/api/v1/media/{record.sha256}/thumbnail",
    }


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, or 413 as soon as they pass ``limit`` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(UPLOAD_CHUNK):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the photo is over {limit} bytes: at most {limit} are taken")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/media",
    status_code=201,
    responses={
        200: {"description": "these bytes were stored already: the same body as the first time"},
        413: {"description": "the photo is over DISPATCHER_MEDIA_MAX_BYTES"},
        415: {"description": "not JPEG, PNG or WebP (by the bytes, whatever the client says)"},
        422: {"description": "the bytes do not decode as the image they claim, or have too many pixels"},
    },
    summary="Upload a photo (evidence); its id is the SHA-256 of its bytes",
)
async def upload_media(
    request: Request,
    file: Annotated[UploadFile, File(description="the photo: JPEG, PNG or WebP")],
    taken_at: Annotated[AwareDatetime | None, Form(description="when the phone took it (ISO 8601)")] = None,
    lat: Annotated[Latitude | None, Form()] = None,
    lon: Annotated[Longitude | None, Form()] = None,
    accuracy_m: Annotated[float | None, Form(ge=0, le=100_000, allow_inf_nan=False)] = None,
) -> Response:
    context = context_of(request)
    store = field_store(request)
    if context.media is None:
        raise HTTPException(503, "no photo store is configured in this server")
    media = context.media
    limit = context.settings.media_max_bytes
    data = await _read_upload(file, limit)
    try:
        photo = await asyncio.to_thread(inspect_photo, data, max_bytes=limit)
    except PhotoRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    # The bytes first (all or nothing), then the row: a row never names bytes that are not there.
    await asyncio.to_thread(media.put, data, thumbnail=photo.thumbnail)
    principal = principal_of(request)
    record, created = await store.add_media(
        MediaRecord(
            sha256=photo.sha256,
            content_type=photo.content_type,
            bytes=photo.size,
            width=photo.width,
            height=photo.height,
            uploaded_by=principal.name,
            uploaded_at=context.clock.now(),
            township=township_id(request),
            client_taken_at=taken_at.astimezone(UTC) if taken_at is not None else None,
            client_lat=lat,
            client_lon=lon,
            client_accuracy_m=accuracy_m,
            exif_taken_at=photo.exif_taken_at,
            exif_lat=photo.exif_lat,
            exif_lon=photo.exif_lon,
        )
    )
    request.state.audit_detail = f"photo {record.sha256} ({record.bytes} bytes{'' if created else ', known'})"
    return json_response(_media_json(record), 201 if created else 200)


async def _readable(request: Request, media_id: str, hub: Hub) -> MediaRecord:
    """The photo's record when the caller may see it; 404 otherwise (whether it exists or not)."""
    not_found = HTTPException(404, f"no photo {media_id}")
    if not is_media_id(media_id):
        raise not_found
    record = await field_store(request).media(media_id)
    township = township_id(request)
    if record is None or record.township != township:
        raise not_found
    account = principal_of(request).account
    if record.uploaded_by == account.name:
        return record
    for incident_id in await field_store(request).referencing(media_id, township):
        try:
            incident = await hub.get(incident_id)
        except IncidentNotFound:
            continue
        if _may_read(account, incident, hub):
            return record
    raise not_found


async def _serve(request: Request, media_id: str, hub: Hub, variant: MediaVariant) -> Response:
    record = await _readable(request, media_id, hub)
    media = context_of(request).media
    data = await asyncio.to_thread(media.get, media_id, variant) if media is not None else None
    if data is None:
        raise HTTPException(404, f"the bytes of photo {media_id} are not in the store")
    content_type = record.content_type if variant is MediaVariant.ORIGINAL else "image/jpeg"
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{media_id}-{variant.value}"', "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=content_type, headers=headers)


@router.get(
    "/media/{media_id}",
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
    summary="A photo's bytes, to its uploader and to whoever may read an incident that references it",
)
async def get_media(request: Request, media_id: str, hub: HubDep) -> Response:
    return await _serve(request, media_id, hub, MediaVariant.ORIGINAL)


@router.get(
    "/media/{media_id}/thumbnail",
    responses={200: {"content": {"image/jpeg": {}}}},
    summary="A photo's thumbnail (JPEG, 320 px on the long side), to the same callers as the photo",
)
async def get_media_thumbnail(request: Request, media_id: str, hub: HubDep) -> Response:
    return await _serve(request, media_id, hub, MediaVariant.THUMBNAIL)


# -- places (龙游通) ------------------------------------------------------------------------------

PLACE_INCIDENTS = 20


def place_json(place: Place, account: Account) -> dict[str, Any]:
    phone = place.contact_phone
    return {
        "code": place.code,
        "kind": place.kind,
        "name": place.name,
        "address": place.address,
        "zone": place.zone,
        "location": {"lat": place.lat, "lon": place.lon} if place.lat is not None and place.lon is not None else None,
        "contact": {
            "name": place.contact_name,
            "phone": phone if phone is None or account.role in SEES_ALL else mask_phone(phone),
        },
        "notes": place.notes,
    }


def _incident_line(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "status": incident.status.value,
        "open": incident.is_open,
        "category": incident.category,
        "description": incident.report.description,
        "priority": incident.priority,
        "reported_at": incident.reported_at,
    }


@router.get("/places/{code}", summary="A place by its code: address, zone, contact (masked by role), incidents")
async def get_place(request: Request, code: PlaceCode, hub: HubDep) -> Response:
    place = await field_store(request).place(code, township_id(request))
    if place is None:
        raise HTTPException(404, f"no place {code!r}")
    opened, _ = await hub.list_incidents(IncidentFilter(place=code, open_only=True), limit=PLACE_INCIDENTS, offset=0)
    latest, _ = await hub.list_incidents(IncidentFilter(place=code), limit=PLACE_INCIDENTS, offset=0)
    seen = {i.id for i in opened}
    incidents = [*opened, *(i for i in latest if i.id not in seen)][:PLACE_INCIDENTS]
    body = place_json(place, principal_of(request).account)
    body["incidents"] = [_incident_line(i) for i in incidents]
    return json_response(body)


_PLACE_URL = re.compile(r"/field/place/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/?(?:[?#].*)?$")
_BARE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def code_in(text: str) -> str | None:
    """The place code a scanned text carries: ``<base-url>/field/place/<code>``, or a bare code."""
    text = text.strip()
    match = _PLACE_URL.search(text)
    if match is not None:
        return match.group(1)
    return text if _BARE_CODE.match(text) else None


def decode_codes(data: bytes) -> list[str]:
    """The texts of the QR codes in an image (blocking: call from a thread). Raises PhotoRefused."""
    import io

    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > DEFAULT_MAX_PIXELS:
                raise PhotoRefused(422, f"the image has more than {DEFAULT_MAX_PIXELS} pixels")
            image.load()
            found = zxingcpp.read_barcodes(image.convert("L"))
    except PhotoRefused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PhotoRefused(422, f"the image could not be decoded: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a decoder's own failure on hostile bytes
        raise PhotoRefused(422, f"the image could not be decoded ({type(exc).__name__})") from None
    return [b.text for b in found if b.valid and b.text]


@router.post(
    "/places/decode",
    responses={422: {"description": "no place code found in the image (or not an image)"}},
    summary="Read the place code in a photo of its QR code (for browsers without BarcodeDetector)",
)
async def decode_place(request: Request, file: Annotated[UploadFile, File()]) -> Response:
    limit = context_of(request).settings.media_max_bytes
    data = await _read_upload(file, limit)
    try:
        texts = await asyncio.to_thread(decode_codes, data)
    except PhotoRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    for text in texts:
        code = code_in(text)
        if code is not None:
            return json_response({"code": code, "text": text})
    raise HTTPException(422, "no place code found in the image" + (f" (read: {texts[0][:80]!r})" if texts else ""))


# -- the officer's tasks and live feed -----------------------------------------------------------------------


@router.get(
    "/me/tasks",
    summary="A field officer's open tasks as its phone lists them, the most urgent first (?scope=team: its team's)",
)
async def my_tasks(
    request: Request, hub: HubDep, scope: Annotated[Literal["mine", "team"], Query()] = "mine"
) -> Response:
    """``data``: a summary of each task (incident id, version, status, priority, category, description, zone,
    location, place, and ``task``: team, state, officer, ``mine``, the running ``deadline``), sorted as
    ``/me/assignments`` sorts them; ``seq``: the event the list is current at (resume ``/ws/field`` from it)."""
    officer = principal_of(request).account.officer_id
    teams = officer_teams(hub, officer) if scope == "team" else frozenset()
    seq, incidents = hub.open_incidents()
    data = task_summaries(incidents, officer, teams, team_names(hub))
    return await json_answer(request, {"data": data, "count": len(data), "seq": seq, "scope": scope})


def gives_assignment(data: dict[str, Any], officer_id: str | None, teams: frozenset[str]) -> bool:
    """Whether an event's data gives (or takes) the officer or its teams an assignment."""
    if officer_id is not None and officer_id in (data.get("officer"), data.get("previous")):
        return True
    if data.get("to_team") in teams or data.get("team") in teams:
        return True
    units = data.get("units")
    return isinstance(units, list) and any(
        isinstance(u, dict) and ((officer_id is not None and u.get("officer") == officer_id) or u.get("team") in teams)
        for u in units
    )


@functools.lru_cache(maxsize=256)
def _event_of(text: str) -> tuple[Any, dict[str, Any]]:
    """An event frame's ``seq`` and ``data``, parsed once for every phone: the feed hands each phone the
    same string, whose hash Python keeps, so the others find it here. Read only: the dict is shared."""
    frame = orjson.loads(text)
    return frame.get("seq"), frame.get("data") or {}


class FieldFilter:
    """What ``/ws/field`` sends through: only the frames of the officer's incidents (heartbeats pass).

    An incident becomes the officer's with the event that gives it an assignment and stays so for this
    connection (its later events, the one that takes the assignment away included, are sent too). After an
    event of one of them comes ``{"kind": "tasks", "seq", "incident_id", "version", "tasks": [...]}``: the
    incident's tasks for this officer (or team) as the hub holds them now, summaries as ``GET /me/tasks``
    answers them, none when the incident is closed or no longer the officer's. It is sent once per version
    of the incident (several events of one commit give one frame), so the phone patches its list instead
    of reading it again.
    """

    def __init__(self, out: Any, hub: Hub, officer_id: str | None, teams: frozenset[str]) -> None:
        self._out = out
        self._hub = hub
        self._officer = officer_id
        self._teams = teams
        _, incidents = hub.open_incidents()
        self.mine = {i.id for i in incidents if holds(i, officer_id, teams)}
        self._versions: dict[int, int] = {}  # the version of each incident's last tasks frame

    async def send_text(self, text: str) -> None:
        if text.startswith('{"kind":"event"'):
            seq, data = _event_of(text)
            incident_id = data.get("incident_id")
            if not isinstance(incident_id, int):
                return  # the township's log (rosters, handovers) is the command room's
            if incident_id not in self.mine:
                current = self._hub.open_index.get(incident_id)
                if gives_assignment(data, self._officer, self._teams) or (
                    current is not None and holds(current, self._officer, self._teams)
                ):
                    self.mine.add(incident_id)
                else:
                    return
            await self._out.send_text(text)
            await self._send_tasks(incident_id, seq)
            return
        await self._out.send_text(text)

    async def _send_tasks(self, incident_id: int, seq: Any) -> None:
        current = self._hub.open_index.get(incident_id)
        version = current.version if current is not None else -1
        if self._versions.get(incident_id) == version:
            return
        self._versions[incident_id] = version
        found = [current] if current is not None else []
        tasks = task_summaries(found, self._officer, self._teams, team_names(self._hub))
        frame = {"kind": "tasks", "seq": seq, "incident_id": incident_id, "version": version, "tasks": tasks}
        await self._out.send_text(orjson.dumps(frame).decode())

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._out.close(code=code, reason=reason)


@feed_router.websocket("/ws/field")
async def field_feed(
    websocket: WebSocket,
    after: Seq | None = None,
    scope: Annotated[Literal["mine", "team"], Query()] = "mine",
) -> None:
    """The officer's events after ``after`` (default: from now), as the board sends them; a first frame
    ``{"kind": "hello", "seq": N, "scope": ...}`` says where it starts. Closed with 4008 when it lags
    (resume with ``after``), 4401 when the token stops working."""
    hub: Hub = await get_hub(websocket)
    await websocket.accept(subprotocol=ws_subprotocol(websocket))
    principal = websocket.state.principal
    officer_id = principal.account.officer_id
    teams = officer_teams(hub, officer_id) if scope == "team" else frozenset()
    masked: Any = MaskedSocket(websocket, principal.account) if needs_masking(principal) else websocket
    start = hub.last_seq if after is None or after > hub.last_seq else after
    out = FieldFilter(masked, hub, officer_id, teams)
    await websocket.send_text(orjson.dumps({"kind": "hello", "seq": start, "scope": scope}).decode())
    drain = asyncio.create_task(board._drain_incoming(websocket))
    revoked: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop_watching = directory_of(websocket).watch_revocation(
        principal.token.id, lambda reason: None if revoked.done() else revoked.set_result(reason)
    )
    try:
        await board._follow(websocket, out, hub, start, drain, revoked)
    finally:
        stop_watching()
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)

"""The field officer's phone app (``/field``): its page, service worker and manifest, and the classifier route.

The app itself is static (``gateways/static/field/``: plain HTML, CSS and JS, no build step, no CDN); the
data comes from the same HTTP API as every other client, with the officer's bearer token. Served here:

* ``GET /field`` and ``GET /field/place/{code}``: the one page (the place code is read by the script);
* ``GET /field/sw.js``: the service worker, served under ``/field`` with ``Service-Worker-Allowed: /field`` so
  that it controls ``/field`` itself and every page below it (a worker at ``/static/field/`` could not);
* ``GET /field/manifest.webmanifest``: what makes the page installable (home-screen icon, standalone window);
* ``GET /field/assets/{name}``: the script, style sheet, labels and icon, gzip-compressed for a client that
  takes it (a third of the bytes over a weak signal), with an ETag so that a phone revalidates them with a
  ``304`` (compressed once per file version and kept in memory: :class:`Assets`);
* ``GET /api/v1/rules/classify?description=...``: the categories the rule table's keywords would choose for a
  description, with the words found, for the report form as the officer types (``/api/v1/rules/explain`` is
  the command room's). Classification stays on the server, where the table and :mod:`rules.keywords` are:
  the phone asks once the typing pauses, and offline it simply shows the catalogue (docs/field.md).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse

from dispatcher.values import Text
from gateways.api import HubDep, json_response

FIELD_DIR = Path(__file__).resolve().parent / "static" / "field"
#: How many categories the classifier route answers at most (the form shows them as chips).
CHOICES = 5

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Asset:
    mtime_ns: int
    raw: bytes
    gzipped: bytes
    etag: str


class Assets:
    """The app's static files by name (a fixed list: nothing else of the directory is served), each read and
    gzip-compressed once per version of the file (its mtime), so an upgraded package is served without a
    restart. Blocking file reads of a few KB, on the event loop like ``_page``."""

    FILES: ClassVar[dict[str, tuple[str, str]]] = {
        "field.js": ("field.js", "text/javascript; charset=utf-8"),
        "field.css": ("field.css", "text/css; charset=utf-8"),
        "zh-CN.json": ("i18n/zh-CN.json", "application/json"),
        "en.json": ("i18n/en.json", "application/json"),
        "icon.svg": ("icon.svg", "image/svg+xml"),
    }

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cache: dict[str, Asset] = {}

    def get(self, name: str) -> tuple[Asset, str] | None:
        """(the file's bytes and their gzip, its content type), or None for a name not in :attr:`FILES`."""
        known = self.FILES.get(name)
        return None if known is None else (self.load(known[0]), known[1])

    def load(self, relative: str) -> Asset:
        """The file at ``relative`` in the directory (the caller names only files of the app)."""
        path = self._directory / relative
        mtime_ns = path.stat().st_mtime_ns
        asset = self._cache.get(relative)
        if asset is None or asset.mtime_ns != mtime_ns:
            raw = path.read_bytes()
            etag = '"' + hashlib.sha256(raw).hexdigest()[:20] + '"'
            asset = Asset(mtime_ns, raw, gzip.compress(raw, compresslevel=9, mtime=0), etag)
            self._cache[relative] = asset
        return asset


def _answer(request: Request, asset: Asset, media_type: str) -> Response:
    """``asset`` gzip-compressed when the client takes it; ``304`` when the client's ETag still holds."""
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(asset.gzipped, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.raw, media_type=media_type, headers=headers)


ASSETS = Assets(FIELD_DIR)


def _page(request: Request) -> Response:
    # Looked at on each request (a stat): an upgraded package is served without a restart, like /board.
    return _answer(request, ASSETS.load("index.html"), "text/html; charset=utf-8")


@router.get("/field", response_class=HTMLResponse, include_in_schema=False)
async def field_page(request: Request) -> Response:
    return _page(request)


@router.get("/field/place/{code}", response_class=HTMLResponse, include_in_schema=False)
async def field_place_page(request: Request, code: str) -> Response:
    """The page a scanned place code opens; the script reads the code from the address."""
    return _page(request)


@router.get("/field/sw.js", include_in_schema=False)
async def field_worker() -> Response:
    return Response(
        (FIELD_DIR / "sw.js").read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={"Service-Worker-Allowed": "/field", "Cache-Control": "no-cache"},
    )


@router.get("/field/manifest.webmanifest", include_in_schema=False)
async def field_manifest() -> Response:
    return Response((FIELD_DIR / "manifest.webmanifest").read_bytes(), media_type="application/manifest+json")


@router.get("/field/assets/{name}", include_in_schema=False)
async def field_asset(request: Request, name: str) -> Response:
    """One of the app's files, gzip-compressed when the client takes it; ``304`` when its ETag still holds."""
    found = ASSETS.get(name)
    if found is None:
        raise HTTPException(404, f"no asset {name!r}")
    return _answer(request, *found)


@router.get("/api/v1/rules/classify", summary="The categories the keyword table would choose for a description")
async def classify(hub: HubDep, description: Annotated[Text, Query(min_length=1, max_length=4000)]) -> Response:
    """``category`` (or null below the table's minimum score) and ``ranking``: up to five ``{category, score,
    words, name, name_en}`` best first; the same :class:`rules.keywords.KeywordClassifier` that routes reports.
    With a message model (``DISPATCHER_MESSAGE_MODEL``) ``category`` is what a report would get (null: triage)
    and ``model`` says who decided (``keywords``, ``model``, ``triage``), with the model's three best labels."""
    rules = hub.rules
    labels = {c.id: c for c in rules.table.catalogue}
    if rules.classifier is None:
        return json_response({"version": rules.table.version, "category": None, "ranking": []})
    found = rules.classifier.classify(description)
    words: dict[str, list[str]] = {}
    for hit in found.hits:
        words.setdefault(hit.category, []).append(hit.word)
    ranking = []
    for category, score in found.ranking[:CHOICES]:
        entry = labels.get(category)
        ranking.append(
            {
                "category": category,
                "score": score,
                "words": words.get(category, []),
                "name": entry.name if entry else category,
                "name_en": entry.name_en if entry else category,
            }
        )
    if rules.messages is None:
        return json_response({"version": rules.table.version, "category": found.category, "ranking": ranking})
    from rules.messages import decide

    # Where the keywords are weak or tie, the message model decides, as it does for a report (rules.messages).
    verdict = decide(description, found, rules.messages, board_class=rules.board_classes)
    model = {
        "decided_by": verdict.decided_by,
        "label": verdict.label,
        "confidence": round(verdict.model.confidence, 4),
        "threshold": verdict.threshold,
        "top": [{"label": label, "probability": round(p, 4)} for label, p in verdict.model.top],
    }
    return json_response(
        {"version": rules.table.version, "category": verdict.category, "ranking": ranking, "model": model}
    )

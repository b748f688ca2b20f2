"""The field officer's phone app (``/field``): its page, service worker and manifest, and the classifier route.

The app itself is static (``gateways/static/field/``: plain HTML, CSS and JS, no build step, no CDN); the
data comes from the same HTTP API as every other client, with the officer's bearer token. Served here:

* ``GET /field`` and ``GET /field/place/{code}``: the one page (the place code is read by the script);
* ``GET /field/sw.js``: the service worker, served under ``/field`` with ``Service-Worker-Allowed: /field`` so
  that it controls ``/field`` itself and every page below it (a worker at ``/static/field/`` could not);
* ``GET /field/manifest.webmanifest``: what makes the page installable (home-screen icon, standalone window);
* ``GET /api/v1/rules/classify?description=...``: the categories the rule table's keywords would choose for a
  description, with the words found, for the report form as the officer types (``/api/v1/rules/explain`` is
  the command room's). Classification stays on the server, where the table and :mod:`rules.keywords` are:
  the phone asks once the typing pauses, and offline it simply shows the catalogue (docs/field.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from dispatcher.values import Text
from gateways.api import HubDep, json_response

FIELD_DIR = Path(__file__).resolve().parent / "static" / "field"
#: How many categories the classifier route answers at most (the form shows them as chips).
CHOICES = 5

router = APIRouter()


def _page() -> HTMLResponse:
    # Read on each request (a few KB): an upgraded package is served without a restart, like /board.
    return HTMLResponse(
        (FIELD_DIR / "index.html").read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/field", response_class=HTMLResponse, include_in_schema=False)
async def field_page() -> HTMLResponse:
    return _page()


@router.get("/field/place/{code}", response_class=HTMLResponse, include_in_schema=False)
async def field_place_page(code: str) -> HTMLResponse:
    """The page a scanned place code opens; the script reads the code from the address."""
    return _page()


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

"""The running server classifies free text with a trained message model (``DISPATCHER_MESSAGE_MODEL``), as
``rules explain --model`` does; keeps it when another rule table is put in force; refuses to start without
the model it was given. The model is trained at test time on a third of cn_messages (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.settings import BUNDLED_TABLE
from rules import RoutingInput, compile_table, load_table
from rules.message_file import read_message_model
from tests.conftest import cn_messages
from tests.e2e.conftest import PLAIN
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

#: Unseen messages looked through for one the model decides against the keywords (bounded).
LOOKED_AT = 600


def _decided_by_the_model(model_path: Path) -> tuple[str, str, str | None]:
    """A message the model was not trained on, where the keywords chose one category and the model, deciding
    because they were weak or tied, another: (text, the model's category, the keywords' category)."""
    book = compile_table(load_table(BUNDLED_TABLE))
    with_model = book.with_messages(read_message_model(model_path))
    for row in cn_messages()[1::3][:LOOKED_AT]:
        text = f"{row['title']} {row['text']}".strip()[:1000]
        decision = with_model.route(RoutingInput(description=text))
        keywords = book.route(RoutingInput(description=text)).category
        if decision.message is not None and decision.message.decided_by == "model" and decision.category != keywords:
            assert decision.category is not None
            return text, decision.category, keywords
    raise AssertionError(f"none of {LOOKED_AT} unseen messages was decided by the model against the keywords")


async def test_the_server_routes_free_text_with_its_model_across_a_table_change(
    cn_message_model: Path, tmp_path: Path
) -> None:
    text, category, keywords = _decided_by_the_model(cn_message_model)
    env = {**PLAIN, "DISPATCHER_MESSAGE_MODEL": str(cn_message_model)}
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", tmp_path / "server.log", env=env).start(
        timeout_s=90
    )
    try:
        async with server.client() as http:
            made = await http.post(
                "/api/v1/incidents", json={"report_id": "m-1", "description": text, "zone": "market"}
            )
            assert made.status_code == 201, made.text
            assert made.json()["category"] == category != keywords  # the model's choice, not the keywords'

            chips = (await http.get("/api/v1/rules/classify", params={"description": text})).json()
            assert chips["category"] == category and chips["model"]["decided_by"] == "model"
            assert len(chips["model"]["top"]) == 3 and chips["model"]["confidence"] >= chips["model"]["threshold"]

            newer = BUNDLED_TABLE.read_text(encoding="utf-8").replace(
                'version: "ershili-2026.11-1"', 'version: "ershili-2026.12-9"'
            )
            put = await http.put("/api/v1/rules", content=newer.encode(), headers={"content-type": "application/yaml"})
            assert put.status_code == 200, put.text
            again = await http.post(
                "/api/v1/incidents", json={"report_id": "m-2", "description": text, "zone": "market"}
            )
            assert again.status_code == 201, again.text
            assert again.json()["routing"]["table_version"] == "ershili-2026.12-9"
            assert again.json()["category"] == category
    finally:
        server.stop()


@pytest.mark.parametrize("content", [None, b"{not json", b'{"format": "dispatcher-message-model", "version": 99}'])
def test_a_missing_or_broken_model_is_a_clear_startup_error(content: bytes | None, tmp_path: Path) -> None:
    model = tmp_path / "ershili.messages.json"
    if content is not None:
        model.write_bytes(content)
    env = {**PLAIN, "DISPATCHER_MESSAGE_MODEL": str(model)}
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", tmp_path / "server.log", env=env)
    with pytest.raises(RuntimeError, match="exited with 2") as failed:
        server.start()
    assert "the message model (DISPATCHER_MESSAGE_MODEL) cannot be used" in str(failed.value)
    assert str(model) in str(failed.value)
    assert server.process is not None and server.process.returncode == 2

"""The ``dispatcher`` command: checking tables, and refusing to serve with a bad one."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dispatcher.settings import BUNDLED_TABLE
from server.cli import app

runner = CliRunner()


def write_beside_catalogue(path: Path, text: str) -> Path:
    """A variant of the bundled table in ``path``, with the catalogue file it includes copied beside it."""
    shutil.copy(BUNDLED_TABLE.parent / "ershili-catalogue.yaml", path.parent / "ershili-catalogue.yaml")
    path.write_text(text, encoding="utf-8")
    return path


def test_rules_check_passes_the_bundled_table() -> None:
    result = runner.invoke(app, ["rules", "check", str(BUNDLED_TABLE)])
    assert result.exit_code == 0, result.output
    assert ": ok: table ershili-2026.11-1 of 廿里镇" in result.output


def test_rules_check_reports_file_and_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    write_beside_catalogue(
        bad, BUNDLED_TABLE.read_text(encoding="utf-8").replace("lead: traffic-police", "lead: traffic-polize", 1)
    )
    result = runner.invoke(app, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.output and "unknown team 'traffic-polize'" in result.output
    assert "Traceback" not in result.output

    as_json = runner.invoke(app, ["rules", "check", "--json", str(bad)])
    findings = json.loads(as_json.output)
    assert findings["ok"] is False and findings["findings"][0]["line"] > 0


def test_serve_refuses_a_bad_table_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("table: 1\nversion: x\n", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--rules",
            str(bad),
            "--database-url",
            f"sqlite+aiosqlite:///{tmp_path}/d.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "the rule table cannot be used" in done.stderr
    assert f"{bad}:1: township: required key is missing" in done.stderr
    assert "Traceback" not in done.stderr


def test_diff_groups_the_history_by_owner_change(tmp_path: Path) -> None:
    text = BUNDLED_TABLE.read_text(encoding="utf-8")
    # The proposal: labour disputes led by the judicial office instead of the labour station.
    proposal = text.replace(
        "      lead: labour-office\n      support: [court, judicial-office]",
        "      lead: judicial-office\n      support: [court, labour-office]",
    )
    assert proposal != text
    write_beside_catalogue(
        tmp_path / "new.yaml", proposal.replace('version: "ershili-2026.11-1"', 'version: "proposal"')
    )
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"category": "labour.wage_arrears", "zone": "town-centre", "description": "欠薪"},
                {"category": "labour.dispute", "description": "劳动合同纠纷"},
                {"category": "traffic.congestion", "zone": "five-way", "description": "堵车"},
            ]
        ),
        encoding="utf-8",
    )
    result = runner.invoke(
        app, ["rules", "diff", str(BUNDLED_TABLE), str(tmp_path / "new.yaml"), "--incidents", str(history), "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["moved"] == 2 and body["records"] == 3
    assert body["changes"] == [
        {
            "from": "service/labour-office+court+judicial-office",
            "to": "service/judicial-office+court+labour-office",
            "count": 2,
            "records": [1, 2],
        }
    ]


def test_explain_prints_the_rule_and_its_conditions(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"category": "market.unlicensed_vendor", "zone": "market", "description": "x"}))
    result = runner.invoke(app, ["rules", "explain", str(BUNDLED_TABLE), str(report)])
    assert result.exit_code == 0, result.output
    assert "→ enforcement/market-town-office+market-supervision+law-enforcement" in result.output
    assert "rule market-order" in result.output and "✓ zone" in result.output


def test_simulate_replays_real_records_and_reports_agreement(tmp_path: Path) -> None:
    root = BUNDLED_TABLE.parent.parent.parent
    out = tmp_path / "sf.json"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--from-csv",
            str(root / "tests" / "fixtures" / "sf311_slice.csv"),
            "--mapping",
            str(root / "simulations" / "examples" / "sf311" / "mapping.yaml"),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "routing agreement with the real owners" in result.output
    body = json.loads(out.read_text(encoding="utf-8"))
    assert body["replayed"] + body["rejected"] == body["rows_read"]
    assert body["agreement"]["overall"] > 0.5


# Without a budget the loader walks the 9^9 expanded values for minutes: the timeout makes that a failure.
@pytest.mark.timeout(30)
def test_rules_check_refuses_an_alias_bomb_with_file_and_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "table: 1\na: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["rules", "check", str(bomb)])
    assert result.exit_code == 1
    assert f"{bomb}:7: the document stands for more than 250000 values" in result.output
    assert "Traceback" not in result.output


def test_accounts_create_list_set_password_lock_and_unlock(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    created = runner.invoke(
        app,
        ["accounts", "create", "op-1", "--role", "operator", "--township", "ershili", "--password-stdin",
         "--database-url", url],
        input="first password 123\n",
    )  # fmt: skip
    listed = runner.invoke(app, ["accounts", "list", "--database-url", url])
    reset = runner.invoke(
        app, ["accounts", "set-password", "op-1", "--password-stdin", "--database-url", url], input="second pass 4567\n"
    )
    too_short = runner.invoke(
        app, ["accounts", "set-password", "op-1", "--password-stdin", "--database-url", url], input="short\n"
    )
    unknown = runner.invoke(app, ["accounts", "set-password", "nobody", "--generate", "--database-url", url])
    locked = runner.invoke(app, ["accounts", "lock", "op-1", "--database-url", url])

    assert created.exit_code == 0, created.output
    assert listed.output.strip().split("\t") == ["op-1", "operator", "ershili", "active"]
    assert reset.exit_code == 0 and "password of op-1 set" in reset.output
    assert too_short.exit_code == 2 and "at least 12" in too_short.output
    assert unknown.exit_code == 1 and "no account 'nobody'" in unknown.output
    assert locked.exit_code == 0
    assert asyncio.run(_can_sign_in(url, "op-1", "second pass 4567")) == "refused"  # locked
    assert runner.invoke(app, ["accounts", "unlock", "op-1", "--database-url", url]).exit_code == 0
    assert asyncio.run(_can_sign_in(url, "op-1", "first password 123")) == "refused"
    assert asyncio.run(_can_sign_in(url, "op-1", "second pass 4567")) == "signed in"


async def _can_sign_in(url: str, name: str, password: str) -> str:
    from dispatcher.accounts import SignInRefused, SqlDirectory

    directory = SqlDirectory(url)
    await directory.open()
    try:
        await directory.sign_in(name, password, datetime.now(UTC))
        return "signed in"
    except SignInRefused:
        return "refused"
    finally:
        await directory.close()

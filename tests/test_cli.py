"""The ``dispatcher`` command: checking tables, and refusing to serve with a bad one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dispatcher.cli import app
from dispatcher.settings import BUNDLED_TABLE

runner = CliRunner()


def test_rules_check_passes_the_bundled_table() -> None:
    result = runner.invoke(app, ["rules", "check", str(BUNDLED_TABLE)])
    assert result.exit_code == 0, result.output
    assert ": ok: table ershili-2026.11-1 of 廿里镇" in result.output


def test_rules_check_reports_file_and_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BUNDLED_TABLE.read_text(encoding="utf-8").replace("lead: traffic-police", "lead: traffic-polize", 1))
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
            "dispatcher",
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

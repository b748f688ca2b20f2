"""The ``dispatcher`` command: ``serve`` runs the command room, ``rules check`` checks a table."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from rules import RuleTableError, compile_table, load_table

app = typer.Typer(help="The township command room's dispatcher.", no_args_is_help=True, add_completion=False)
rules_app = typer.Typer(help="Work with rule tables (the responsibility boundary list).", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [env DISPATCHER_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [env DISPATCHER_PORT]")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy async URL [env DISPATCHER_DATABASE_URL]")
    ] = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="rule table YAML [env DISPATCHER_RULES_PATH]")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning [env DISPATCHER_LOG_LEVEL]")] = None,
) -> None:
    """Run the dispatcher: HTTP API, board websocket and the board page at /board."""
    import uvicorn

    from dispatcher.app import create_app
    from dispatcher.settings import Settings

    overrides = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "database_url": database_url,
            "rules_path": rules,
            "log_level": log_level,
        }.items()
        if v is not None
    }
    settings = Settings.model_validate(overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app(settings)
    except RuleTableError as exc:
        typer.echo(f"the rule table cannot be used:\n{exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"board: http://{settings.host}:{settings.port}/board   API docs: http://{settings.host}:{settings.port}/docs"
    )
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@rules_app.command("check")
def rules_check(
    path: Annotated[Path, typer.Argument(help="the rule table to check")],
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
) -> None:
    """Check a rule table; exit 0 only when it is clean, 1 with one line per problem otherwise."""
    try:
        book = compile_table(load_table(path))
    except RuleTableError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "problems": [asdict(p) for p in exc.problems]}, ensure_ascii=False))
        else:
            for problem in exc.problems:
                typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    table = book.table
    if as_json:
        typer.echo(json.dumps({"ok": True, "version": table.version, "rules": len(table.rules)}, ensure_ascii=False))
    else:
        typer.echo(
            f"{path}: ok: table {table.version} of {table.township.name} ({table.township.id}): "
            f"{len(table.rules)} rules, {len(table.catalogue)} categories, {len(table.teams)} teams, "
            f"{len(table.zones)} zones"
        )


def main() -> None:
    app()

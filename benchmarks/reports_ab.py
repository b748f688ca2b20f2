"""The briefing's figures, the code before and after a change, alternated on the same filled database.

Run by hand from the repository root (the "before" module is a copy of ``dispatcher/briefing.py`` at the
commit to compare with):

    git show 2acbf36:dispatcher/briefing.py > /tmp/old_briefing.py
    .venv/bin/python benchmarks/reports_ab.py --fill 100000 --database-url sqlite+aiosqlite:////tmp/ab/bench.db \\
        --old /tmp/old_briefing.py
    .venv/bin/python benchmarks/reports_ab.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/ab \\
        --old /tmp/old_briefing.py --fill 100000    # the database must exist and be empty

Each grouping of ``reports.py`` for November and for the year 2026, ``--repeats`` times, old and new one
after the other so that both meet the same load; wall time (median, min) and this process's CPU time
(median: the SQLite work runs in this process; on PostgreSQL it is the server's). Checks that both
give identical figures. Bounded in count; network only to the given database (127.0.0.1).

With ``--document 2026`` (a named period: month, quarter or year) it times the whole briefing document
(``document()``: the figures by module, team, officer and zone, the township's, the monthly trend and the
hotspots) old and new instead, and checks that both documents hold identical figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from reports import YEAR, fill  # noqa: E402

import dispatcher.briefing as new  # noqa: E402
from dispatcher.sql_store import build_engine  # noqa: E402

PERIODS = {
    "month": (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    "year": (YEAR, datetime(2027, 1, 1, tzinfo=UTC)),
}


def load_old(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("old_briefing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_briefing"] = module
    spec.loader.exec_module(module)
    return module


def unit_row(u: Any) -> Any:
    if u is None:
        return None
    return (
        (u.unit, u.received, u.accepted, u.due, u.closed, u.due_closed, u.on_time, u.overdue_open),
        (getattr(u, "extended", 0), getattr(u, "reworked", 0)),
        sorted((k.value, v.count, v.median_s, v.p90_s) for k, v in u.stages.items()),
    )


def figures(b: Any) -> str:
    return repr([unit_row(u) for u in b.units]) + repr([(r.rule_id, r.returns) for r in b.returns])


def document_figures(doc: Any) -> str:
    """Every figure of a briefing document, comparable between the old and the new module."""
    parts: list[Any] = [unit_row(doc.township_figures), [(m, unit_row(u)) for m, u in doc.trend]]
    parts += [figures(b) for _, b in sorted(doc.by.items())]
    parts += [[(r.rank, r.score, r.figures.unit) for r in doc.ranking]]
    parts += [[(h.key, h.received) for h in doc.hotspots[k]] for k in sorted(doc.hotspots)]
    return repr(parts)


async def measure_document(engine: Any, old: Any, text: str, repeats: int) -> None:
    times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    out: dict[str, str] = {}
    for _ in range(repeats):
        for label, module in (("old", old), ("new", new)):
            period = module.Period.parse(text)
            t0, c0 = time.perf_counter(), time.process_time()
            doc = await module.document(engine, township="ershili", period=period)
            times[label].append((time.perf_counter() - t0, time.process_time() - c0))
            out[label] = document_figures(doc)
    same = out["old"] == out["new"]
    print(f"document {text}: old {show(times['old'])} | new {show(times['new'])} | identical={same}", flush=True)


def show(measured: list[tuple[float, float]]) -> str:
    wall = [w for w, _ in measured]
    cpu = [c for _, c in measured]
    return (
        f"wall {1000 * statistics.median(wall):.0f} ms (min {1000 * min(wall):.0f}), "
        f"cpu {1000 * statistics.median(cpu):.0f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    if args.fill:
        print(await fill(args.database_url, args.fill, 16), flush=True)
    old = load_old(args.old)
    engine = build_engine(args.database_url, durable=False)
    try:
        if args.document:
            await measure_document(engine, old, args.document, args.repeats)
            return
        for name, (start, end) in PERIODS.items():
            for unit in args.units.split(","):
                times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
                out: dict[str, str] = {}
                for _ in range(args.repeats):
                    for label, module in (("old", old), ("new", new)):
                        t0, c0 = time.perf_counter(), time.process_time()
                        result = await module.compute(engine, start=start, end=end, by=module.Unit(unit))
                        times[label].append((time.perf_counter() - t0, time.process_time() - c0))
                        out[label] = figures(result)

                same = out["old"] == out["new"]
                print(
                    f"{name}/{unit}: old {show(times['old'])} | new {show(times['new'])} | identical={same}", flush=True
                )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--old", type=Path, required=True, help="the briefing module before the change")
    parser.add_argument("--fill", type=int, default=0, help="fill the (empty) database with this many incidents")
    parser.add_argument("--units", default="township,module,team,officer,zone")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--document", help="time document() of this named period (2026, 2026-Q4) instead")
    parsed = parser.parse_args()
    if not 0 <= parsed.fill <= 1_000_000 or not 1 <= parsed.repeats <= 20:
        parser.error("--fill 0..1,000,000 and --repeats 1..20")
    asyncio.run(main(parsed))

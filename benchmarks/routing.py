"""Routing throughput and ``rules check`` time (the rules benchmark; named ``routing`` so that it does
not shadow the ``rules`` package when run as a script), with the bundled table and generated large tables.

Run by hand from the repository root:

    .venv/bin/python benchmarks/routing.py            # bundled, 1,566 and 20,000 rules
    .venv/bin/python benchmarks/routing.py --sizes 1566 --seconds 3 --json out.json

The generated tables are shaped like a city's boundary list (the city of the report published
1,566 items): a catalogue of dotted categories in branches, zones, some rules with time,
severity and reporter conditions, explicit precedence on a few. Each measurement is bounded in
count and time; nothing touches the network.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from rules import RoutingInput, RuleBook, compile_table, load_source, load_source_text
from rules.checker import check

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "rules" / "tables" / "ershili.yaml"


def generated_table(rules: int, seed: int = 7) -> str:
    """A valid table with ``rules`` rules (about five per category, every category covered)."""
    rng = random.Random(seed)
    branches = max(10, rules // 50)
    leaves = 10
    categories = [f"b{b:04d}.c{c:02d}" for b in range(branches) for c in range(leaves)]
    zones = [f"z{z:03d}" for z in range(60)]
    teams = [f"t{t:03d}" for t in range(40)]
    director = {"name": "主任", "title": "主任"}
    modules = [{"id": "command-room", "kind": "office", "name": "指挥室", "name_en": "Command room", "lead": director}]
    for m in range(10):
        kind = "main" if m < 6 else "sub"
        leader = {"name": f"牵头人{m}", "title": "副镇长"}
        modules.append({"id": f"m{m}", "kind": kind, "name": f"模块{m}", "name_en": f"Module {m}", "lead": leader})
    market_days = [1, 4, 7, 11, 14, 17, 21, 24, 27]
    table: dict[str, Any] = {
        "table": 1,
        "version": f"generated-{rules}",
        "township": {"id": "gen", "name": "生成镇", "name_en": "Generated"},
        "party_secretary": {"name": "书记", "title": "党委书记"},
        "modules": modules,
        "teams": [
            {"id": t, "module": f"m{i % 10}", "name": t, "name_en": t, "department": "县局"}
            for i, t in enumerate(teams)
        ],
        "zones": [
            {
                "id": z,
                "name": z,
                "name_en": z,
                "geometry": {"type": "Point", "coordinates": [118.9 + (i % 10) * 0.01, 28.8 + (i // 10) * 0.01]},
                "radius_m": 300,
            }
            for i, z in enumerate(zones)
        ],
        "calendars": [{"id": "market-days", "name": "集日", "name_en": "Market days", "days_of_month": market_days}],
        "catalogue": [{"id": c, "name": c, "name_en": c, "board_class": "城乡建设"} for c in categories],
        "rules": [],
    }
    out: list[dict[str, Any]] = table["rules"]
    # One catch-all per branch so that every category has an owner.
    for b in range(branches):
        out.append(
            {
                "id": f"branch-{b}",
                "when": {"category": f"b{b:04d}.*"},
                "then": {"module": "m0", "lead": rng.choice(teams)},
            }
        )
    n = 0
    while len(out) < rules:
        n += 1
        when: dict[str, Any] = {"category": rng.choice(categories)}
        roll = rng.random()
        if roll < 0.5:
            when["zone"] = rng.choice(zones)
        elif roll < 0.6:
            when["time"] = {"hours": rng.choice(["07:00-09:00", "17:00-19:00", "22:00-06:00"])}
        elif roll < 0.65:
            when["time"] = {"calendar": "market-days"}
        elif roll < 0.75:
            when["severity_at_least"] = rng.choice([3, 4])
        elif roll < 0.8:
            when["reporter_kind"] = rng.choice(["citizen", "device"])
        lead = rng.choice(teams)
        support = rng.sample([t for t in teams if t != lead], rng.randint(0, 3))
        out.append(
            {
                "id": f"r{n}",
                "precedence": rng.choice([0, 0, 0, 1, 2]),
                "when": when,
                "then": {"module": f"m{rng.randrange(10)}", "lead": lead, "support": support, "ack_within": "5m"},
            }
        )
    return yaml.safe_dump(table, allow_unicode=True, sort_keys=False)


def inputs_for(book: RuleBook, count: int, seed: int = 11) -> list[RoutingInput]:
    rng = random.Random(seed)
    categories = [c.id for c in book.table.catalogue]
    zones = [z.id for z in book.table.zones]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    items = []
    for _ in range(count):
        items.append(
            RoutingInput(
                category=rng.choice(categories),
                zone=rng.choice(zones) if zones and rng.random() < 0.7 else None,
                severity=rng.choice([None, 1, 2, 3, 4, 5]),
                reporter_kind=rng.choice([None, "officer", "citizen", "device"]),
                at=start + timedelta(minutes=rng.randrange(60 * 24 * 30)),
            )
        )
    return items


def routing_rate(book: RuleBook, seconds: float, rounds: int = 5) -> dict[str, float]:
    items = inputs_for(book, 20_000)
    rates = []
    for _ in range(rounds):
        done = 0
        started = time.perf_counter()
        deadline = started + seconds / rounds
        while time.perf_counter() < deadline and done < 5_000_000:
            for item in items:
                book.route(item)
            done += len(items)
        rates.append(done / (time.perf_counter() - started))
    return {"median_per_s": statistics.median(rates), "min_per_s": min(rates), "max_per_s": max(rates)}


def measure(name: str, text: str | None, seconds: float) -> dict[str, Any]:
    started = time.perf_counter()
    source = load_source(BUNDLED) if text is None else load_source_text(text, source=name)
    loaded = time.perf_counter()
    book = compile_table(source.table)
    compiled = time.perf_counter()
    findings = check(book, source)
    checked = time.perf_counter()
    result = {
        "table": name,
        "rules": len(book.table.rules),
        "categories": len(book.table.catalogue),
        "load_s": round(loaded - started, 3),
        "compile_s": round(compiled - loaded, 3),
        "check_s": round(checked - compiled, 3),
        "findings": len(findings),
        **{k: round(v) for k, v in routing_rate(book, seconds).items()},
    }
    print(
        f"{name:>14}: {result['rules']:6d} rules, {result['categories']:5d} categories | "
        f"routing {result['median_per_s']:>9,} /s (min {result['min_per_s']:,}) | "
        f"load {result['load_s']} s, compile {result['compile_s']} s, check {result['check_s']} s "
        f"({result['findings']} findings)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1566,20000", help="generated table sizes (rules), comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="routing time per table")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, single thread")
    results = [measure("bundled", None, args.seconds)]
    for size in (int(s) for s in args.sizes.split(",") if s):
        results.append(measure(f"generated-{size}", generated_table(size), args.seconds))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()

"""Derive the Los Angeles field yards' areas from the dev sample's points, and measure the example on other rows.

    .venv/bin/python simulations/examples/la311/derive_zones.py            # writes yards.geojson
    .venv/bin/python simulations/examples/la311/derive_zones.py --measure  # agreement on the even rows

The areas are **grid cells** (网格化管理's grid): the city is cut into cells of 0.02° (about 2.2 km north-south,
1.8 km east-west at this latitude); each cell belongs to the yard that took most of the requests of the
**odd-numbered data rows** (1, 3, 5, ...) located in it, separately for each owner (Sanitation's yards, the
graffiti contractors of Community Beautification, Street Lighting's districts). An empty cell within two
cells of an assigned one takes the nearest assigned cell's yard. Each yard's area is the MultiPolygon of its
cells. Graffiti requests the crews report themselves have an address but no coordinates: for them the
mapping's ``zones`` section names the contractor's area by ZIP code (``--zips`` prints it: the contractor
that took most of the odd rows' graffiti requests of that ZIP code). The even-numbered rows were not used:
``--measure`` replays them and prints the agreement.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "la311_2017" / "myla311_2017_subset.csv"
CELL = 0.02
GROUPS = {"BOS": "bos", "OCB": "ocb", "BSL": "bsl"}
FILL = 2  # cells


def zone_id(group: str, yard: str) -> str:
    return f"{group}-{yard.lower().replace('_', '-')}"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def derive(rows: list[dict[str, str]]) -> dict[str, object]:
    votes: dict[str, dict[tuple[int, int], Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for number, row in enumerate(rows, 1):
        group = GROUPS.get(row["Owner"])
        yard = row["AssignTo"].strip()
        if number % 2 == 0 or group is None or not yard or yard.startswith("F-") or " " in yard:
            continue
        if not row["Latitude"] or not row["Longitude"]:
            continue
        cell = (int(float(row["Longitude"]) // CELL), int(float(row["Latitude"]) // CELL))
        votes[group][cell][yard] += 1
    cells: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for group, by_cell in votes.items():
        owner = {cell: counter.most_common(1)[0][0] for cell, counter in by_cell.items()}
        xs = [c[0] for c in owner]
        ys = [c[1] for c in owner]
        filled = dict(owner)
        for x in range(min(xs) - FILL, max(xs) + FILL + 1):
            for y in range(min(ys) - FILL, max(ys) + FILL + 1):
                if (x, y) in owner:
                    continue
                near = min(owner, key=lambda c: ((c[0] - x) ** 2 + (c[1] - y) ** 2, c))
                if max(abs(near[0] - x), abs(near[1] - y)) <= FILL:
                    filled[(x, y)] = owner[near]
        for cell, yard in sorted(filled.items()):
            cells[zone_id(group, yard)].append(cell)
    features = []
    for zone in sorted(cells):
        squares = [
            [
                [
                    [round(x * CELL, 4), round(y * CELL, 4)],
                    [round((x + 1) * CELL, 4), round(y * CELL, 4)],
                    [round((x + 1) * CELL, 4), round((y + 1) * CELL, 4)],
                    [round(x * CELL, 4), round((y + 1) * CELL, 4)],
                    [round(x * CELL, 4), round(y * CELL, 4)],
                ]
            ]
            for x, y in cells[zone]
        ]
        features.append(
            {
                "type": "Feature",
                "properties": {"id": zone, "name": zone, "name_en": f"{zone}: {len(squares)} grid cells"},
                "geometry": {"type": "MultiPolygon", "coordinates": squares},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def zips(rows: list[dict[str, str]]) -> dict[str, str]:
    """ZIP code -> the graffiti contractor's zone that took most of the odd rows' graffiti requests there:
    most graffiti requests (those the crews report themselves) have an address but no coordinates."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for number, row in enumerate(rows, 1):
        yard, zip_code = row["AssignTo"].strip(), row["ZipCode"].strip()
        if number % 2 == 1 and row["Owner"] == "OCB" and yard and zip_code:
            votes[zip_code][yard] += 1
    return {z: zone_id("ocb", c.most_common(1)[0][0]) for z, c in sorted(votes.items())}


def measure(path: Path, parity: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from simulations.realdata import run_from_csv

    rows = _rows(path)
    with tempfile.TemporaryDirectory() as folder:
        subset = Path(folder) / "rows.csv"
        with subset.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for n, r in enumerate(rows, 1) if n % 2 == parity)
        _, report = asyncio.run(run_from_csv(subset, HERE / "mapping.yaml"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--measure", action="store_true", help="replay the even rows and print the agreement")
    parser.add_argument("--odd", action="store_true", help="with --measure: the odd rows (those derived from)")
    parser.add_argument("--zips", action="store_true", help="print the mapping's zones: section (ZIP -> contractor)")
    args = parser.parse_args()
    if args.zips:
        print("zones:  # made by derive_zones.py --zips: ZIP code -> graffiti contractor (odd rows)")
        for zip_code, zone in zips(_rows(args.csv)).items():
            print(f'  "{zip_code}": {zone}')
        return
    if args.measure:
        report = measure(args.csv, 1 if args.odd else 0)
        found = report["agreement"]
        print(json.dumps({k: report[k] for k in ("rows_read", "replayed", "rejected", "rejected_reasons")}))
        print(json.dumps({k: found[k] for k in ("compared", "agreed", "overall", "ceiling", "not_compared")}))
        for category, row in found["by_category"].items():
            print(f"  {category:<28}{row['compared']:>6}{row['share']:>8}")
        for row in found["top_disagreements"][:8]:
            print(f"  {row['ours']:<20} {row['real']:<20} {row['count']:>5}")
        return
    collection = derive(_rows(args.csv))
    (HERE / "yards.geojson").write_text(json.dumps(collection, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"yards.geojson: {len(collection['features'])} areas")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

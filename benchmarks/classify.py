"""Citizen messages: cross-validated accuracy of keywords + model + triage on labelled messages, by class.

Stratified k-fold over a labelled CSV (default: ../shared/data/cn_messages/cn_messages_dev.csv, read at run
time and never copied; see its README): for each fold a model is trained on the other folds with
:func:`rules.training.train`, written to a temporary file and read back (load time), and every held-out
message is decided by :func:`rules.messages.decide` with the table's keywords (default: the bundled table).
The message's text is its title and body joined by a space.

Reported, per top-level class and overall: the share decided (not sent to triage), the accuracy of what was
decided (the class of the chosen category, or the model's class), and the accuracy counting triage as wrong;
beside them the keywords alone (the class of the keywords' category, none = wrong) and the model alone (its
most probable class, whatever its confidence); the time to read and decide one message (median and p99 of the
wall clock, and the mean CPU time, which a busy machine disturbs less; one process, one thread); the model
file's size and load time (wall and CPU).

    .venv/bin/python benchmarks/classify.py                 # 5 folds
    .venv/bin/python benchmarks/classify.py --folds 3 --json /tmp/classify.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rules import compile_table, load_table  # noqa: E402
from rules.message_file import read_message_model, write_message_model  # noqa: E402
from rules.messages import decide  # noqa: E402
from rules.training import DEFAULT_KEYWORD_MARGIN, DEFAULT_MAX_CHARS, DEFAULT_THRESHOLD, train  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "cn_messages" / "cn_messages_dev.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--table", type=Path, default=ROOT / "rules" / "tables" / "ershili.yaml")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--keyword-margin", type=int, default=DEFAULT_KEYWORD_MARGIN)
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from sklearn.model_selection import StratifiedKFold

    with args.csv.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [f"{r.get('title') or ''} {r['text']}".strip() for r in rows]
    labels = [r["label"] for r in rows]
    book = compile_table(load_table(args.table))
    if book.classifier is None:
        raise SystemExit(f"{args.table} has no keywords")
    board_class = {c.id: c.board_class for c in book.table.catalogue}

    tally: dict[str, Counter[str]] = defaultdict(Counter)
    decided_by: Counter[str] = Counter()
    times_ms: list[float] = []
    loads_s: list[float] = []
    loads_cpu_s: list[float] = []
    cpu_ms: list[float] = []
    trains_s: list[float] = []
    size = 0
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
    for fold, (train_rows, test_rows) in enumerate(folds.split(texts, labels), 1):
        started = time.perf_counter()
        data = train(
            [texts[i] for i in train_rows],
            [labels[i] for i in train_rows],
            threshold=args.threshold,
            keyword_margin=args.keyword_margin,
            max_chars=args.max_chars,
        )
        trains_s.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.json"
            write_message_model(data, path)
            size = path.stat().st_size
            started, cpu = time.perf_counter(), time.process_time()
            model = read_message_model(path)
            loads_s.append(time.perf_counter() - started)
            loads_cpu_s.append(time.process_time() - cpu)
        cpu = time.process_time()
        for i in test_rows:
            text, truth = texts[i], labels[i]
            started = time.perf_counter()
            keywords = book.classifier.classify(text)
            verdict = decide(text, keywords, model, board_class=board_class)
            times_ms.append((time.perf_counter() - started) * 1000)
            row = tally[truth]
            row["n"] += 1
            decided_by[verdict.decided_by] += 1
            if verdict.decided_by == "triage":
                row["triage"] += 1
            else:
                chosen = board_class.get(verdict.category or "", verdict.label)
                row["decided_ok"] += chosen == truth
            row["keywords_ok"] += keywords.category is not None and board_class[keywords.category] == truth
            row["model_ok"] += verdict.model.label == truth
        cpu_ms.append((time.process_time() - cpu) * 1000 / len(test_rows))
        print(f"fold {fold}: trained in {trains_s[-1]:.1f} s, loaded in {loads_s[-1]:.3f} s", file=sys.stderr)

    def figures(row: Counter[str]) -> dict[str, float | int]:
        n, decided = row["n"], row["n"] - row["triage"]
        return {
            "messages": n,
            "triage_share": round(row["triage"] / n, 4),
            "accuracy_of_decided": round(row["decided_ok"] / decided, 4) if decided else 0.0,
            "accuracy_triage_wrong": round(row["decided_ok"] / n, 4),
            "keywords_alone": round(row["keywords_ok"] / n, 4),
            "model_alone": round(row["model_ok"] / n, 4),
        }

    total: Counter[str] = Counter()
    for row in tally.values():
        total.update(row)
    times_ms.sort()
    result = {
        "csv": str(args.csv),
        "table": book.version,
        "folds": args.folds,
        "threshold": args.threshold,
        "keyword_margin": args.keyword_margin,
        "max_chars": args.max_chars,
        "overall": figures(total),
        "by_class": {label: figures(tally[label]) for label in sorted(tally, key=lambda k: -tally[k]["n"])},
        "decided_by": dict(decided_by),
        "ms_per_message": {
            "median": round(statistics.median(times_ms), 3),
            "p99": round(times_ms[int(len(times_ms) * 0.99)], 3),
            "mean": round(statistics.fmean(times_ms), 3),
            "cpu_mean": round(statistics.fmean(cpu_ms), 3),
        },
        "model_file_bytes": size,
        "load_s": {
            "median": round(statistics.median(loads_s), 3),
            "max": round(max(loads_s), 3),
            "cpu_median": round(statistics.median(loads_cpu_s), 3),
        },
        "train_s": {"median": round(statistics.median(trains_s), 1)},
    }
    print(f"{'class':<10}{'n':>6}{'triage':>8}{'decided ok':>12}{'all ok':>8}{'keywords':>10}{'model':>8}")
    for label, row in [*result["by_class"].items(), ("overall", result["overall"])]:
        print(
            f"{label:<10}{row['messages']:>6}{row['triage_share']:>8.1%}{row['accuracy_of_decided']:>12.1%}"
            f"{row['accuracy_triage_wrong']:>8.1%}{row['keywords_alone']:>10.1%}{row['model_alone']:>8.1%}"
        )
    print(f"decided by: {result['decided_by']}; ms per message: {result['ms_per_message']}")
    print(f"model file {size:,} bytes, loaded in {result['load_s']} s, trained in {result['train_s']} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Keyword classification, measured by hand: accuracy per board class, and classifications per second.

Loads the catalogue and keyword table (``rules/tables/ershili-catalogue.yaml`` by default), then

1. classifies labelled messages and prints, per board class (一级分类), how many the table got right
   and the commonest confusions. The messages are ``tests/fixtures/keyword_messages.yaml`` by default;
   ``--csv`` reads any CSV with a label column and one or more text columns instead (for example a
   message-board export with 一级标签, 留言主题 and 留言详情);
2. times ``classify`` single-threaded on ``--texts`` texts of 100 to 300 characters built from those
   messages (joined in turn, cut at the length), and prints the median rate of ``--repeats`` runs:
   once with texts that each join messages of one board class (like one long complaint), once with
   texts mixing any messages (many more categories found per text: a worst case).

Every loop is bounded: at most ``--limit`` messages, ``--repeats`` runs of ``--rounds`` passes, and a
run stops early after ``--max-seconds``. Nothing is written; the script needs only the project venv.

    .venv/bin/python benchmarks/keywords.py
    .venv/bin/python benchmarks/keywords.py --min-score 1 --repeats 5
    .venv/bin/python benchmarks/keywords.py --csv board.csv --label-column 一级标签 --text-columns 留言主题,留言详情
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import yaml

from rules.keywords import KeywordClassifier
from rules.table import Category, KeywordRule

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = REPO_ROOT / "rules" / "tables" / "ershili-catalogue.yaml"
DEFAULT_MESSAGES = REPO_ROOT / "tests" / "fixtures" / "keyword_messages.yaml"
MIN_CHARS, MAX_CHARS = 100, 300


def load_table(path: Path) -> tuple[list[Category], list[KeywordRule]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalogue = [Category.model_validate(item) for item in data.get("catalogue") or []]
    rules = [KeywordRule.model_validate(item) for item in data.get("keywords") or []]
    return catalogue, rules


def load_messages(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(board class, text) pairs, at most ``--limit`` of them."""
    pairs: list[tuple[str, str]] = []
    if args.csv is None:
        data = yaml.safe_load(args.messages.read_text(encoding="utf-8"))
        pairs = [(item["class"], item["text"]) for item in data["messages"]]
    else:
        columns = [c.strip() for c in args.text_columns.split(",") if c.strip()]
        with args.csv.open(encoding=args.encoding, newline="") as handle:
            for row in csv.DictReader(handle, delimiter=args.delimiter):
                if len(pairs) >= args.limit:
                    break
                label = (row.get(args.label_column) or "").strip()
                text = "\n".join((row.get(c) or "").strip() for c in columns).strip()
                if label and text:
                    pairs.append((label, text))
    return pairs[: args.limit]


def report_accuracy(
    classifier: KeywordClassifier, board_class: Mapping[str, str], pairs: list[tuple[str, str]]
) -> None:
    totals: Counter[str] = Counter()
    right: Counter[str] = Counter()
    confusions: Counter[tuple[str, str]] = Counter()
    for expected, text in pairs:
        result = classifier.classify(text)
        got = board_class[result.category] if result.category is not None else "(none)"
        totals[expected] += 1
        if got == expected:
            right[expected] += 1
        else:
            confusions[(expected, got)] += 1
    width = max((len(c) for c in totals), default=4) + 2
    print(f"accuracy per board class (min_score={classifier.min_score}):")
    for name, total in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {name:<{width}}{right[name]:>5} / {total:<5} {right[name] / total:7.1%}")
    correct, total = sum(right.values()), sum(totals.values())
    print(f"  {'all':<{width}}{correct:>5} / {total:<5} {correct / max(total, 1):7.1%}")
    unclassified = sum(n for (_, got), n in confusions.items() if got == "(none)")
    print(f"  no category (below min_score): {unclassified}")
    if confusions:
        print("commonest confusions (expected -> chosen):")
        for (expected, got), n in confusions.most_common(8):
            print(f"  {expected} -> {got}: {n}")


def timing_texts(pairs: list[tuple[str, str]], count: int, *, one_topic: bool) -> list[str]:
    """``count`` texts whose lengths step evenly through MIN_CHARS..MAX_CHARS, made by joining
    messages in turn and cutting at the target length. ``one_topic``: each text joins messages of
    one board class only (the classes take turns), like one long complaint; otherwise any messages,
    which finds words of many more categories per text (a worst case)."""
    pools: dict[str, list[str]] = {}
    for board_class, text in pairs:
        if text:
            pools.setdefault(board_class if one_topic else "", []).append(text)
    classes = sorted(pools)
    cursor = dict.fromkeys(classes, 0)
    texts: list[str] = []
    for i in range(count if classes else 0):
        target = MIN_CHARS + (MAX_CHARS - MIN_CHARS) * i // max(count - 1, 1)
        board_class = classes[i % len(classes)]
        pool = pools[board_class]
        text = ""
        while len(text) < target:
            text += pool[cursor[board_class] % len(pool)]
            cursor[board_class] += 1
        texts.append(text[:target])
    return texts


def report_speed(classifier: KeywordClassifier, label: str, texts: list[str], args: argparse.Namespace) -> None:
    if not texts:
        print(f"speed, {label}: no text to time")
        return
    rates = []
    for _ in range(args.repeats):
        done = 0
        start = time.perf_counter()
        deadline = start + args.max_seconds
        for _ in range(args.rounds):
            for text in texts:
                classifier.classify(text)
            done += len(texts)
            if time.perf_counter() > deadline:
                break
        rates.append(done / (time.perf_counter() - start))
    mean_chars = statistics.fmean(len(t) for t in texts)
    results = [classifier.classify(t) for t in texts]
    hits = statistics.fmean(len(r.hits) for r in results)
    categories = statistics.fmean(len({h.category for h in r.hits}) for r in results)
    print(
        f"speed, {label}: {statistics.median(rates):,.0f} classifications/s single-threaded "
        f"(median of {len(rates)} runs, range {min(rates):,.0f}-{max(rates):,.0f}); {len(texts)} texts of "
        f"{mean_chars:.0f} characters on average, {hits:.1f} words of {categories:.1f} categories found per text"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="YAML with catalogue: and keywords:")
    parser.add_argument("--messages", type=Path, default=DEFAULT_MESSAGES, help="YAML fixture of labelled messages")
    parser.add_argument("--csv", type=Path, help="labelled messages as CSV instead of the YAML fixture")
    parser.add_argument("--label-column", default="board_class", help="CSV column holding the board class")
    parser.add_argument("--text-columns", default="text", help="CSV columns joined into the text, comma-separated")
    parser.add_argument("--delimiter", default=",", help="CSV delimiter")
    parser.add_argument("--encoding", default="utf-8-sig", help="CSV encoding")
    parser.add_argument("--limit", type=int, default=100_000, help="read at most this many messages")
    parser.add_argument("--min-score", type=int, default=2, help="as the table's keyword_min_score (default 2)")
    parser.add_argument("--texts", type=int, default=200, help="how many texts of 100-300 characters to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--rounds", type=int, default=200, help="passes over the texts per timed run")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="a timed run stops after this long")
    args = parser.parse_args(argv)

    catalogue, rules = load_table(args.table)
    board_class = {c.id: c.board_class for c in catalogue}
    started = time.perf_counter()
    classifier = KeywordClassifier.compile(rules, min_score=args.min_score)
    compiled_ms = (time.perf_counter() - started) * 1000
    print(f"table: {args.table} ({len(catalogue)} categories, {len(rules)} keyword entries)")
    print(f"classifier: {classifier}, compiled in {compiled_ms:.0f} ms; Python {platform.python_version()}")

    pairs = load_messages(args)
    if not pairs:
        print("no labelled messages")
        return 2
    report_accuracy(classifier, board_class, pairs)
    report_speed(classifier, "one topic per text", timing_texts(pairs, args.texts, one_topic=True), args)
    report_speed(classifier, "mixed topics", timing_texts(pairs, args.texts, one_topic=False), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

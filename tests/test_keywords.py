"""Keyword classification: the matching contract on small inline tables, the bundled catalogue
and keyword table, and how often the table gets real-looking citizen messages right."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.keywords import RANKING_SIZE, Classification, KeywordClassifier, KeywordHit, normalise
from rules.table import BOARD_CLASSES, Category, KeywordRule

REPO = Path(__file__).resolve().parent.parent
CATALOGUE_TABLE = REPO / "rules" / "tables" / "ershili-catalogue.yaml"
MESSAGES = Path(__file__).resolve().parent / "fixtures" / "keyword_messages.yaml"

#: The ids the rule table routes; they must stay in the catalogue, under these board classes.
EXISTING = {
    "traffic.congestion": "交通运输",
    "traffic.accident": "交通运输",
    "traffic.illegal_parking": "交通运输",
    "market.unlicensed_vendor": "城乡建设",
    "market.stall_encroachment": "城乡建设",
    "food.safety_complaint": "卫生计生",
    "labour.wage_arrears": "劳动和社会保障",
    "labour.dispute": "劳动和社会保障",
    "environment.noise": "环境保护",
    "environment.pollution": "环境保护",
    "public_order.dispute": "政法",
    "public_order.crowd": "政法",
    "planning.illegal_construction": "城乡建设",
}
ACCURACY_FLOOR = 0.85


def kw(category: str, *words: str, weight: int = 1) -> KeywordRule:
    return KeywordRule(category=category, words=list(words), weight=weight)


def classify(rules: list[KeywordRule], text: str, *, min_score: int = 1) -> Classification:
    return KeywordClassifier.compile(rules, min_score=min_score).classify(text)


# -- matching ------------------------------------------------------------------------------------

MATCHING = [
    # (word, text, found?)
    ("拖欠工资", "公司拖欠工资三个月了", True),
    ("拖欠工资", "公司拖欠了工资", False),
    ("停车", "小区停车位不够", True),  # a CJK word is a substring, even inside a longer word
    ("𠮷野家", "楼下𠮷野家的油烟", True),  # beyond the BMP
    ("吵", "隔壁太吵了", True),  # one CJK character (allowed, though a table should avoid it)
    ("wifi信号", "家里xwifi信号差", True),  # a CJK character makes the whole word a substring
    ("jam", "traffic jam at the junction", True),
    ("jam", "Traffic JAM", True),
    ("jam", "路口又jam了", True),  # CJK characters are not letters for the whole-word rule
    ("jam", "pajamas", False),
    ("jam", "jammed", False),
    ("jam", "jam-packed", True),
    ("jam", "jam_cam", True),  # an underscore is neither a letter nor a digit
    ("110", "赶紧打110报警", True),
    ("110", "门牌1100号", False),
    ("x", "x光片", True),
    ("x", "xy", False),
    ("café", "cafés", False),  # a Latin word needs non-letters around it, accents included
    ("traffic jam", "TRAFFIC   JAM again", True),  # whitespace runs collapse
    ("pm2.5", "今天PM2.5爆表", True),
    ("pm2.5", "今天ＰＭ２．５爆表", True),  # NFKC: full-width letters, digits and dot
    ("ＰＭ２．５", "pm2.5 超标", True),  # keywords are normalised too
    ("噪音", "噪 音", False),
    ("12345", "已打１２３４５投诉", True),
]


@pytest.mark.parametrize(("word", "text", "found"), MATCHING)
def test_substring_and_whole_word_matching(word: str, text: str, found: bool) -> None:
    result = classify([kw("c", word)], text)
    assert (result.category == "c") is found
    assert result.hits == ((KeywordHit(word, "c", 1),) if found else ())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＡＢＣ　１２３", "abc 123"),
        ("  Noise\t\n at  NIGHT ", "noise at night"),
        ("噪音扰民，怎么办？", "噪音扰民,怎么办?"),
        ("ｶﾞ", "ガ"),  # half-width kana compose
        ("Ａ\u0301", "á"),  # a full-width letter composes with a following accent
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


# -- scoring -------------------------------------------------------------------------------------

SCORING: list[tuple[str, list[KeywordRule], str, str | None, int]] = [
    # (case, rules, text, category, score)
    ("weights add up", [kw("a", "欠薪", "工资", weight=3)], "欠薪，工资", "a", 6),
    ("a word counts once however often it occurs", [kw("a", "工资", weight=3)], "工资工资工资", "a", 3),
    ("a word listed twice in an entry counts once", [kw("a", "工资", "工资", weight=2)], "工资", "a", 2),
    ("case and width do not make two words", [kw("a", "jam", "ＪＡＭ", weight=2)], "jam", "a", 2),
    ("a word in two entries counts for both", [kw("a", "工资", weight=2), kw("a", "工资", weight=3)], "工资", "a", 5),
    ("nested words both count", [kw("a", "停车"), kw("b", "停车位", weight=2)], "停车位", "b", 2),
    ("highest score wins", [kw("a", "噪音"), kw("b", "施工", "夜间施工", weight=2)], "夜间施工噪音", "b", 4),
    ("tie: first entry wins", [kw("a", "噪音"), kw("b", "施工")], "施工噪音", "a", 1),
    ("tie, reversed table", [kw("b", "施工"), kw("a", "噪音")], "施工噪音", "b", 1),
    (
        "tie: a category's first entry decides, not its later ones",
        [kw("a", "甲"), kw("b", "乙"), kw("a", "丙")],
        "乙丙",
        "a",
        1,
    ),
    ("nothing found", [kw("a", "噪音")], "路灯坏了", None, 0),
    ("empty text", [kw("a", "噪音")], "", None, 0),
    ("no rules", [], "噪音", None, 0),
]


@pytest.mark.parametrize(("case", "rules", "text", "category", "score"), SCORING, ids=[c[0] for c in SCORING])
def test_scoring(case: str, rules: list[KeywordRule], text: str, category: str | None, score: int) -> None:
    result = classify(rules, text)
    assert (result.category, result.score) == (category, score)


@pytest.mark.parametrize(
    ("min_score", "category"),
    [(1, "a"), (3, "a"), (4, None)],
)
def test_min_score(min_score: int, category: str | None) -> None:
    result = classify([kw("a", "噪音", weight=2), kw("a", "扰民")], "噪音扰民", min_score=min_score)
    assert result.category == category
    assert result.score == 3  # reported even below min_score
    assert result.ranking == (("a", 3),)
    assert {h.word for h in result.hits} == {"噪音", "扰民"}


def test_min_score_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="min_score"):
        KeywordClassifier.compile([kw("a", "噪音")], min_score=0)


def test_a_word_empty_once_normalised_is_refused() -> None:
    with pytest.raises(ValueError, match=r"keywords\[1\]"):
        KeywordClassifier.compile([kw("a", "噪音"), kw("b", "\u3000")])


def test_hits_and_ranking() -> None:
    rules = [
        kw("noise", "噪音", "扰民", weight=2),
        kw("site", "工地", weight=3),
        kw("noise", "夜间"),
        kw("light", "路灯"),
        kw("dust", "扬尘"),
        kw("water", "污水"),
        kw("smell", "臭味"),
        kw("other", "违建"),
    ]
    result = classify(rules, "工地夜间噪音扰民，扬尘、污水、臭味都有，旁边还有违建")
    assert result.category == "noise"
    assert result.score == 5
    # every category with a score, best first; ties in table order; at most RANKING_SIZE of them
    assert result.ranking == (("noise", 5), ("site", 3), ("dust", 1), ("water", 1), ("smell", 1))
    assert len(result.ranking) == RANKING_SIZE
    # every word found, grouped by category in ranking order (beyond the ranking too), table order within
    assert result.hits == (
        KeywordHit("噪音", "noise", 2),
        KeywordHit("扰民", "noise", 2),
        KeywordHit("夜间", "noise", 1),
        KeywordHit("工地", "site", 3),
        KeywordHit("扬尘", "dust", 1),
        KeywordHit("污水", "water", 1),
        KeywordHit("臭味", "smell", 1),
        KeywordHit("违建", "other", 1),
    )


def test_words_sharing_their_start_are_told_apart() -> None:
    rules = [kw("a", "小区管理", "小区物业", "物业费"), kw("b", "物业", "小区", "区物"), kw("c", "x光", "xx")]
    result = classify(rules, "小区物业很差，X光机也坏了")
    assert [h.word for h in result.hits] == ["物业", "小区", "区物", "小区物业", "x光"]
    assert result.ranking == (("b", 3), ("a", 1), ("c", 1))


def test_concurrent_use_gives_the_same_results() -> None:
    classifier = KeywordClassifier.compile([kw("a", "噪音", "扰民"), kw("b", "路灯", weight=2)])
    texts = ["噪音扰民", "路灯坏了", "路灯下噪音", "无关"] * 50
    expected = [classifier.classify(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(classifier.classify, texts)) == expected


def test_hits_keep_the_word_as_written() -> None:
    result = classify([kw("a", "ＰＭ２．５")], "pm2.5")
    assert result.hits == (KeywordHit("ＰＭ２．５", "a", 1),)


def test_classifier_is_immutable_and_reusable() -> None:
    rules = [kw("a", "噪音")]
    classifier = KeywordClassifier.compile(rules)
    with pytest.raises(AttributeError, match="immutable"):
        classifier.__setattr__("_min_score", 5)
    with pytest.raises(AttributeError, match="immutable"):
        classifier.__delattr__("_min_score")
    rules.append(kw("b", "路灯"))  # the compiled classifier does not see later changes
    assert classifier.classify("路灯").category is None
    assert classifier.classify("噪音") == classifier.classify("噪音")
    assert classifier.categories == ("a",)
    assert classifier.word_count == 1


# -- the bundled catalogue and keyword table -----------------------------------------------------


def load_catalogue_table() -> dict[str, Any]:
    data = yaml.safe_load(CATALOGUE_TABLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_catalogue_table_is_valid() -> None:
    data = load_catalogue_table()
    assert set(data) == {"catalogue", "keywords"}
    categories = [Category.model_validate(item) for item in data["catalogue"]]
    rules = [KeywordRule.model_validate(item) for item in data["keywords"]]

    ids = [c.id for c in categories]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert 50 <= len(ids) <= 75
    known = set(ids)
    assert {r.category for r in rules} <= known, {r.category for r in rules} - known
    assert {r.category for r in rules} == known, f"categories without keywords: {known - {r.category for r in rules}}"

    per_class = Counter(c.board_class for c in categories)
    assert set(per_class) == set(BOARD_CLASSES)
    assert all(2 <= n <= 8 for n in per_class.values()), per_class

    by_id = {c.id: c for c in categories}
    for category_id, board_class in EXISTING.items():
        assert category_id in by_id, category_id
        assert by_id[category_id].board_class == board_class, category_id

    # a rule on a branch (education.*) stays within one board class
    classes_by_prefix: dict[str, set[str]] = {}
    for c in categories:
        classes_by_prefix.setdefault(c.id.split(".")[0], set()).add(c.board_class)
    assert all(len(classes) == 1 for classes in classes_by_prefix.values()), classes_by_prefix

    # every category has strong words (weight 4 or more), and no word is a single character
    assert {r.category for r in rules if r.weight >= 4} == known
    assert not [w for r in rules for w in r.words if len(normalise(w)) == 1]

    classifier = KeywordClassifier.compile(rules)
    assert set(classifier.categories) == known


def load_messages() -> list[tuple[str, str]]:
    data = yaml.safe_load(MESSAGES.read_text(encoding="utf-8"))
    return [(item["class"], item["text"]) for item in data["messages"]]


def test_messages_fixture() -> None:
    messages = load_messages()
    assert len(messages) >= 60
    assert {board_class for board_class, _ in messages} == set(BOARD_CLASSES)


@pytest.mark.parametrize("min_score", [1, 2])
def test_bundled_table_classifies_citizen_messages(min_score: int) -> None:
    data = load_catalogue_table()
    board_class = {c.id: c.board_class for c in (Category.model_validate(item) for item in data["catalogue"])}
    classifier = KeywordClassifier.compile(
        [KeywordRule.model_validate(item) for item in data["keywords"]], min_score=min_score
    )
    messages = load_messages()
    misses = []
    for expected, text in messages:
        result = classifier.classify(text)
        got = board_class[result.category] if result.category is not None else None
        if got != expected:
            misses.append(f"{expected} -> {got} {result.ranking}: {text}")
    accuracy = 1 - len(misses) / len(messages)
    print(f"\nmin_score={min_score}: {accuracy:.1%} of {len(messages)} messages; misses:", *misses, sep="\n  ")
    assert accuracy >= ACCURACY_FLOOR, "\n".join(misses)

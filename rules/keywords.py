"""Keyword classification of a free-text description into a catalogue category.

Reports and hotline transcripts often arrive without a category; the table's ``keywords`` section
(:class:`rules.table.KeywordRule`) decides one from the description. This module does no I/O. It
compiles the rules once into an immutable :class:`KeywordClassifier` that any thread may share.

Contract of :meth:`KeywordClassifier.classify`:

- **Normalisation.** The text and every keyword are normalised with Unicode NFKC (so full-width
  ``ＡＢＣ１２３`` reads as ``abc123``), lowercased, and their runs of whitespace are collapsed to
  one space (:func:`normalise`). Matching is therefore case-insensitive.
- **Two ways of matching.** A word containing any CJK character (Han, kana, Hangul, bopomofo)
  matches as a plain substring anywhere in the text: ``拖欠工资`` is found in ``公司拖欠工资三个月``.
  A word without one (Latin letters, digits, ``pm2.5``, ``hit-and-run``) matches only as a whole
  word: neither the character before it nor the one after it may be a letter or a digit, CJK
  characters excepted. So ``jam`` is found in ``traffic jam`` and in ``又jam了``, but not in
  ``pajamas``; ``110`` is found in ``打110报警`` but not in ``1100``.
- **Scoring.** Each distinct word of a :class:`~rules.table.KeywordRule` entry that is found adds
  that entry's ``weight`` once to the entry's category, however often it occurs. A word listed in
  two entries counts for both; a word listed twice in one entry counts once. Words are matched
  independently: ``停车`` is found inside ``停车位`` as well as ``停车位`` itself.
- **Decision.** The category with the highest score wins. A tie goes to the category whose first
  keyword entry comes earlier in the rules given to :meth:`KeywordClassifier.compile`. When the
  highest score is below ``min_score``, the category is ``None``; the score (the highest reached,
  0 when nothing was found), the hits and the ranking are still reported.
- **Evidence.** :attr:`Classification.hits` lists every word found, for every category: grouped by
  category in ranking order (best first, ties as above), and within a category in table order.
  :attr:`Classification.ranking` holds at most :data:`RANKING_SIZE` categories with a non-zero
  score, best first.

The classifier is pure and immutable after :meth:`KeywordClassifier.compile`: ``classify`` takes
no lock and keeps nothing between calls, so one instance serves every thread and event loop.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, groupby
from operator import itemgetter
from typing import Final, NoReturn, final

from rules.table import KeywordRule

#: How many categories :attr:`Classification.ranking` holds at most.
RANKING_SIZE: Final = 5

# Han (radicals, ideographic iteration marks and numerals, Ext A, unified, compatibility, Ext B and
# later), kana, bopomofo and Hangul syllables: scripts written without spaces between words.
_CJK_RANGES: Final = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
_HAS_CJK: Final = re.compile(f"[{_CJK_RANGES}]")

# The full-width punctuation and space that nearly every Chinese text holds. Replacing them by their
# NFKC forms first lets most texts skip the (slow) full NFKC pass; the result is the same because
# each replacement is the character's own compatibility decomposition.
_COMMON_FULL_WIDTH: Final = tuple((c, unicodedata.normalize("NFKC", c)) for c in "，：；？！（）％～\u3000")

# Text is scanned as UTF-16 code units. Every two adjacent units are read as one native 32-bit
# integer (which spares building a string per position), and a word of two or more units is filed
# under one of its unit pairs: the one that the fewest other words share, so that a pair common to
# many words (小区 in 小区管理, 小区物业...) does not make them all candidates at once.
_UNITS: Final = "utf-16-le"


def normalise(text: str) -> str:
    """``text`` as the classifier reads it: NFKC, lowercased, whitespace runs collapsed, stripped."""
    if not unicodedata.is_normalized("NFKC", text):
        for full_width, plain in _COMMON_FULL_WIDTH:
            if full_width in text:
                text = text.replace(full_width, plain)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
    return " ".join(text.lower().split())


@dataclass(frozen=True, slots=True)
class KeywordHit:
    """A keyword found in the text: ``word`` as written in the table, and what it added."""

    word: str
    category: str
    weight: int


@dataclass(frozen=True, slots=True)
class Classification:
    """The outcome of one :meth:`KeywordClassifier.classify` call (see the module contract).

    ``category`` is ``None`` when no category reaches ``min_score``; ``score`` is then the highest
    score reached (0 when no word was found).
    """

    category: str | None
    score: int
    hits: tuple[KeywordHit, ...]
    ranking: tuple[tuple[str, int], ...]


_NOTHING: Final = Classification(None, 0, (), ())

# An entry's hit as the scan keeps it: (sort key, category index, weight, hit). A category's index is
# its place in tie-break order; the sort key is (index << 32) | table order, so sorting the hits
# groups each category's together, in table order.
_Entry = tuple[int, int, int, KeywordHit]
# One distinct normalised word: its text, whether finding its key pair is not proof enough (a word
# of three or more units needs ``in``), whether it must stand as a whole word (it has no CJK
# character), and the entries that list it.
_Word = tuple[str, bool, bool, tuple[_Entry, ...]]

_CATEGORY: Final = itemgetter(1)
_WEIGHT: Final = itemgetter(2)
_HIT: Final = itemgetter(3)
_RANK: Final = itemgetter(0, 1)  # (-score, category index): best first, ties to the one listed first


def _by_category(matched: list[_Entry]) -> list[tuple[int, list[_Entry]]]:
    return [(category, list(group)) for category, group in groupby(matched, _CATEGORY)]


def _unit_pairs(word: str) -> list[int]:
    """Every two adjacent UTF-16 units of ``word`` as the scan reads them, in order."""
    data = word.encode(_UNITS)
    return [int(memoryview(data[i : i + 4]).cast("I")[0]) for i in range(0, len(data) - 2, 2)]


def _is_word_char(char: str) -> bool:
    """A letter or digit that is not CJK: what may not touch a Latin word on either side."""
    return char.isalnum() and _HAS_CJK.match(char) is None


def _occurs_as_whole_word(word: str, text: str) -> bool:
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not _is_word_char(text[start - 1])) and (end == len(text) or not _is_word_char(text[end])):
            return True
        start = text.find(word, start + 1)
    return False


@final
class KeywordClassifier:
    """Keyword rules compiled for classification; build it with :meth:`compile`."""

    __slots__ = ("_by_char", "_by_pair", "_categories", "_char_keys", "_min_score", "_pair_keys")

    _by_pair: dict[int, tuple[_Word, ...]]
    _by_char: dict[int, tuple[_Word, ...]]
    _pair_keys: frozenset[int]
    _char_keys: frozenset[int]
    _categories: tuple[str, ...]
    _min_score: int

    def __init__(
        self,
        *,
        by_pair: dict[int, tuple[_Word, ...]],
        by_char: dict[int, tuple[_Word, ...]],
        categories: tuple[str, ...],
        min_score: int,
    ) -> None:
        """Internal: use :meth:`compile`."""
        object.__setattr__(self, "_by_pair", by_pair)
        object.__setattr__(self, "_by_char", by_char)
        object.__setattr__(self, "_pair_keys", frozenset(by_pair))
        object.__setattr__(self, "_char_keys", frozenset(by_char))
        object.__setattr__(self, "_categories", categories)
        object.__setattr__(self, "_min_score", min_score)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return (
            f"KeywordClassifier({len(self._categories)} categories, {self.word_count} words, "
            f"min_score={self._min_score})"
        )

    @classmethod
    def compile(cls, rules: Sequence[KeywordRule], *, min_score: int = 1) -> KeywordClassifier:
        """Index ``rules`` for :meth:`classify`.

        Raises ``ValueError`` when ``min_score`` is below 1, or when a word is empty once normalised
        (only whitespace). The rules are read once; later changes to them do not reach the result.
        """
        if min_score < 1:
            raise ValueError(f"min_score must be at least 1, got {min_score}")
        categories: dict[str, int] = {}
        entries_by_word: dict[str, list[_Entry]] = {}
        order = 0
        for index, rule in enumerate(rules):
            category = categories.setdefault(rule.category, len(categories))
            seen: set[str] = set()
            for word in rule.words:
                text = normalise(word)
                if not text:
                    raise ValueError(f"keywords[{index}] ({rule.category}): word {word!r} is empty once normalised")
                if text in seen:
                    continue
                seen.add(text)
                hit = KeywordHit(word, rule.category, rule.weight)
                sort_key = (category << 32) | order  # groups a category's hits, in table order
                entries_by_word.setdefault(text, []).append((sort_key, category, rule.weight, hit))
                order += 1

        pairs = {text: _unit_pairs(text) for text in entries_by_word}
        sharing = Counter(pair for word_pairs in pairs.values() for pair in set(word_pairs))
        by_pair: dict[int, list[_Word]] = {}
        by_char: dict[int, list[_Word]] = {}
        for text, entries in entries_by_word.items():
            word_pairs = pairs[text]
            item: _Word = (text, len(word_pairs) > 1, _HAS_CJK.search(text) is None, tuple(entries))
            if word_pairs:
                key = min(word_pairs, key=lambda pair: sharing[pair])  # the first of the rarest
                by_pair.setdefault(key, []).append(item)
            else:
                by_char.setdefault(int(memoryview(text.encode(_UNITS)).cast("H")[0]), []).append(item)
        return cls(
            by_pair={key: tuple(words) for key, words in by_pair.items()},
            by_char={key: tuple(words) for key, words in by_char.items()},
            categories=tuple(categories),
            min_score=min_score,
        )

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories the rules name, in tie-break order (first keyword entry first)."""
        return self._categories

    @property
    def min_score(self) -> int:
        return self._min_score

    @property
    def word_count(self) -> int:
        """How many distinct normalised words the rules hold."""
        return sum(len(words) for words in self._by_pair.values()) + sum(len(w) for w in self._by_char.values())

    def classify(self, text: str) -> Classification:
        """Choose the category of ``text`` by its keywords (see the module contract)."""
        t = normalise(text)
        data = t.encode(_UNITS)
        size = len(data)
        # Every two adjacent code units, at even and at odd offsets, as 32-bit integers: the set
        # intersection runs in C and leaves the few words whose key pair occurs in the text.
        keys = self._pair_keys
        present = keys.intersection(memoryview(data[: size - size % 4]).cast("I"))
        if size >= 6:
            present |= keys.intersection(memoryview(data[2 : size - (size - 2) % 4]).cast("I"))
        matched: list[_Entry] = []
        by_pair = self._by_pair
        for key in present:
            for word, check, whole, entries in by_pair[key]:
                if (check and word not in t) or (whole and not _occurs_as_whole_word(word, t)):
                    continue
                matched += entries
        if self._by_char:
            for key in self._char_keys.intersection(memoryview(data).cast("H")):
                for word, _, whole, entries in self._by_char[key]:
                    if not whole or _occurs_as_whole_word(word, t):
                        matched += entries
        if not matched:
            return _NOTHING
        # Sorting by (category index, table order) groups each category's hits in table order; the
        # per-hit work below stays in C (groupby, map, sum), Python only loops over categories.
        matched.sort()  # the sort keys are unique, so hits are never compared
        ranked = sorted(
            [(-sum(map(_WEIGHT, group)), category, group) for category, group in _by_category(matched)],
            key=_RANK,
        )
        names = self._categories
        negative, best, _ = ranked[0]
        return Classification(
            names[best] if -negative >= self._min_score else None,
            -negative,
            tuple(chain.from_iterable([map(_HIT, group) for _, _, group in ranked])),
            tuple([(names[category], -negative) for negative, category, _ in ranked[:RANKING_SIZE]]),
        )

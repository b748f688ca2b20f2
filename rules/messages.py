"""Citizen messages: the table's keywords first, a trained model where they are weak, triage below its confidence.

A message without a category (a 12345 hotline transcript, a message-board post) is classified in three steps
(:func:`decide`):

1. **Keywords** (:mod:`rules.keywords`, the table's own words, which an officer can read): when the keywords'
   choice leads every other *label* by at least the model's ``keyword_margin`` points, it stands.
2. **The model** (:class:`MessageModel`: Chinese word segmentation with jieba, TF-IDF, a multinomial logistic
   regression trained with scikit-learn by :mod:`rules.training`) decides where the keywords are weak or tie:
   its most probable label, when that probability reaches ``threshold``.
3. **Triage**: otherwise the message waits for a clerk in the command room's triage queue.

Labels are what the model was trained on: catalogue category ids (a township's own history) or the
message board's top-level classes (``board_class`` of the catalogue, e.g. ``城乡建设``). A board class chosen
by the model becomes the keywords' best category of that class; when the keywords found none in it, the
message goes to triage with the class as the model's suggestion.

Pure: no file is read here and no clock. :meth:`MessageModel.from_data` builds a model from data already
read (``rules.message_file`` reads and writes the file); the segmenter is built in memory from the words the
model knows (with jieba's frequencies), so loading does not build jieba's 350,000-word prefix dictionary and
scoring does not need scikit-learn. A model is immutable after it is built and may be shared by threads
(jieba's cutting takes no lock and keeps nothing between calls once its dictionary is set).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import jieba

from rules.keywords import Classification, normalise

#: How many labels :attr:`ModelVerdict.top` holds.
TOP: Final = 3
FORMAT: Final = "dispatcher-message-model"
VERSION: Final = 1


def tokens(cut: Callable[[str], Sequence[str]], text: str, max_chars: int) -> list[str]:
    """The words of ``text`` as the model reads them: :func:`rules.keywords.normalise`-d, the first
    ``max_chars`` characters, cut by ``cut``, blanks dropped."""
    return [w for w in cut(normalise(text)[:max_chars]) if w.strip()]


@dataclass(frozen=True, slots=True)
class ModelVerdict:
    """The model's reading of one message: every label's probability, the ``TOP`` best first."""

    top: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    @property
    def confidence(self) -> float:
        return self.top[0][1] if self.top else 0.0


@dataclass(frozen=True, slots=True)
class MessageVerdict:
    """How a message's category was decided (:func:`decide`).

    ``decided_by`` is ``keywords``, ``model`` or ``triage``; ``label`` the label chosen (a category id or a
    board class; for triage, the model's best guess); ``keyword_margin`` how far the keywords' choice led
    the next label (0 when they found nothing or tie); ``model`` the model's probabilities.
    """

    decided_by: Literal["keywords", "model", "triage"]
    category: str | None
    label: str | None
    keyword_margin: int
    model: ModelVerdict
    threshold: float
    needed_margin: int


@dataclass(frozen=True)
class MessageModel:
    """A trained message model (see the module docstring); build it with :meth:`from_data`.

    ``weights`` maps a word to its IDF and its weight for every label (in ``labels`` order); ``intercepts``
    are the labels' biases. Scoring: the words' counts, sublinear TF (1 + ln count) times IDF, L2-normalised,
    dotted with the weights, plus the intercepts, then softmax.
    """

    labels: tuple[str, ...]
    weights: Mapping[str, tuple[float, tuple[float, ...]]]
    intercepts: tuple[float, ...]
    threshold: float
    keyword_margin: int
    max_chars: int
    trained_on: Mapping[str, Any]
    _tokenizer: jieba.Tokenizer

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> MessageModel:
        """A model from its file's content (a JSON object, as :mod:`rules.training` writes it).

        Raises ``ValueError`` naming what is wrong when the data is not such a model.
        """
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a message model of format {FORMAT} version {VERSION}")
        try:
            labels = tuple(str(label) for label in data["labels"])
            words = data["words"]
            idf = data["idf"]
            coef = data["coef"]
            intercepts = tuple(float(b) for b in data["intercepts"])
            freq = data["freq"]
            total = int(data["total"])
            threshold = float(data["threshold"])
            margin = int(data["keyword_margin"])
            max_chars = int(data["max_chars"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a message model needs {exc}") from None
        if not labels or len(intercepts) != len(labels):
            raise ValueError("a message model needs one intercept per label")
        if not (len(words) == len(idf) == len(coef) == len(freq)):
            raise ValueError("a message model needs one idf, weight row and frequency per word")
        if any(len(row) != len(labels) for row in coef):
            raise ValueError("a message model's weight rows need one weight per label")
        if not (0.0 <= threshold <= 1.0) or margin < 0 or max_chars < 1 or total < 1:
            raise ValueError("threshold must be in [0, 1], keyword_margin ≥ 0, max_chars ≥ 1, total ≥ 1")
        if not all(isinstance(w, str) for w in words):
            raise ValueError("a message model's words are strings")
        # Built with zip and map (loops in C): this is most of a model's load time.
        weights = dict(zip(words, zip(map(float, idf), map(tuple, coef), strict=True), strict=True))
        tokenizer = jieba.Tokenizer()
        table: dict[str, int] = {}
        for word in words:
            for end in range(1, len(word)):
                table[word[:end]] = 0  # the prefixes jieba's word graph walks through
        table.update(zip(words, map(int, freq), strict=True))
        tokenizer.FREQ = table
        tokenizer.total = total
        tokenizer.initialized = True  # the dictionary is set: jieba reads no file
        return cls(
            labels=labels,
            weights=weights,
            intercepts=intercepts,
            threshold=threshold,
            keyword_margin=margin,
            max_chars=max_chars,
            trained_on=dict(data.get("trained_on") or {}),
            _tokenizer=tokenizer,
        )

    def cut(self, text: str) -> list[str]:
        """jieba's cut (no HMM) with the model's own dictionary."""
        return list(self._tokenizer.cut(text, HMM=False))

    def words(self, text: str) -> list[str]:
        """The words of ``text`` the model reads (:func:`tokens`)."""
        return tokens(self.cut, text, self.max_chars)

    def read(self, text: str) -> ModelVerdict:
        """Every label's probability for ``text``; the ``TOP`` most probable first (ties in label order)."""
        counts = Counter(self.words(text))
        sums = [0.0] * len(self.labels)
        norm = 0.0
        weights = self.weights
        for word, count in counts.items():
            known = weights.get(word)
            if known is None:
                continue
            value = (1.0 + math.log(count)) * known[0]
            norm += value * value
            for k, w in enumerate(known[1]):
                sums[k] += value * w
        scale = 1.0 / math.sqrt(norm) if norm > 0 else 0.0
        scores = [s * scale + b for s, b in zip(sums, self.intercepts, strict=True)]
        top_score = max(scores)
        exps = [math.exp(s - top_score) for s in scores]
        total = sum(exps)
        ranked = sorted(range(len(scores)), key=lambda k: (-exps[k], k))[:TOP]
        return ModelVerdict(tuple((self.labels[k], exps[k] / total) for k in ranked))

    def explain(self, text: str, label: str, count: int = 5) -> list[tuple[str, float]]:
        """The words that weigh most for ``label`` in ``text``, with their (unnormalised) contribution."""
        if label not in self.labels:
            return []
        k = self.labels.index(label)
        counts = Counter(self.words(text))
        found = [
            (word, (1.0 + math.log(n)) * self.weights[word][0] * self.weights[word][1][k])
            for word, n in counts.items()
            if word in self.weights
        ]
        return sorted(found, key=lambda p: -p[1])[:count]


def keyword_labels(classification: Classification, label_of: Callable[[str], str]) -> list[tuple[str, int]]:
    """The keywords' scores summed by label (``label_of`` a category), best first, ties in first-hit order."""
    totals: dict[str, int] = {}
    for hit in classification.hits:
        label = label_of(hit.category)
        totals[label] = totals.get(label, 0) + hit.weight
    return sorted(totals.items(), key=lambda kv: -kv[1])


def decide(
    text: str,
    classification: Classification | None,
    model: MessageModel,
    *,
    board_class: Mapping[str, str],
) -> MessageVerdict:
    """Keywords first, the model where they are weak or tie, triage below the model's threshold.

    ``board_class`` maps each catalogue category to its board class; a model whose labels are board
    classes compares the keywords by class, one whose labels are categories by category.
    """
    by_class = any(label not in board_class for label in model.labels)

    def label_of(category: str) -> str:
        return board_class.get(category, category) if by_class else category

    verdict = model.read(text)
    margin = 0
    chosen = classification.category if classification is not None else None
    if classification is not None and chosen is not None:
        ranked = keyword_labels(classification, label_of)
        mine = label_of(chosen)
        best_other = max((score for label, score in ranked if label != mine), default=0)
        own = next(score for label, score in ranked if label == mine)
        margin = max(0, own - best_other)
        if margin >= model.keyword_margin and own >= best_other:
            return MessageVerdict("keywords", chosen, mine, margin, verdict, model.threshold, model.keyword_margin)
    label = verdict.label
    if label is not None and verdict.confidence >= model.threshold:
        category: str | None = label if label in board_class else None
        if category is None and classification is not None:
            category = next((c for c, _ in classification.ranking if label_of(c) == label), None)
            if category is None:
                category = next((h.category for h in classification.hits if label_of(h.category) == label), None)
        if category is not None:
            return MessageVerdict("model", category, label, margin, verdict, model.threshold, model.keyword_margin)
    return MessageVerdict("triage", None, label, margin, verdict, model.threshold, model.keyword_margin)

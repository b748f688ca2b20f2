"""Training a message model (:class:`rules.messages.MessageModel`) from labelled messages.

1. Every text is cut by jieba (its full dictionary, no HMM) and the words found in at least ``min_df``
   messages become the vocabulary (at most ``max_words``, the most frequent).
2. The model's own segmenter is those words with jieba's frequencies; the texts are cut again with it, so
   that training sees exactly what classifying will see.
3. TF-IDF (sublinear TF, L2 norm) and a multinomial logistic regression (scikit-learn, ``C``) are fitted.

The result is plain data (:func:`train` returns the JSON object ``rules.message_file`` writes): the words, their
IDF and weights, the intercepts, the segmenter's frequencies, the threshold and keyword margin, and what it was
trained on. Reads no file but jieba's bundled dictionary (through jieba); CPU-bound: seconds for thousands of
messages, so call it from a thread when an event loop is running.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jieba

from rules.messages import FORMAT, VERSION, MessageModel, tokens

DEFAULT_THRESHOLD = 0.5
DEFAULT_KEYWORD_MARGIN = 15
DEFAULT_MAX_CHARS = 200


def _full_cut(text: str) -> list[str]:
    return list(jieba.cut(text, HMM=False))


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    keyword_margin: int = DEFAULT_KEYWORD_MARGIN,
    max_chars: int = DEFAULT_MAX_CHARS,
    min_df: int = 2,
    max_words: int = 40_000,
    c: float = 10.0,
    trained_on: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model data for ``texts`` and their ``labels`` (two labels at least, in the same order).

    Raises ``ValueError`` when the texts and labels differ in number, fewer than two labels occur, or no
    word occurs in ``min_df`` messages.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError("training needs messages of two labels at least")
    jieba.setLogLevel(60)
    jieba.initialize()
    first = TfidfVectorizer(analyzer=lambda t: tokens(_full_cut, t, max_chars), min_df=min_df, max_features=max_words)
    try:
        first.fit(texts)
    except ValueError:
        raise ValueError(f"no word occurs in {min_df} messages") from None
    vocabulary = sorted(first.vocabulary_)
    full = jieba.dt.FREQ
    freq = [max(int(full.get(w, 0)), 1) for w in vocabulary]
    total = int(jieba.dt.total)
    draft = MessageModel.from_data(
        {
            "format": FORMAT,
            "version": VERSION,
            "labels": sorted(set(labels)),
            "words": vocabulary,
            "idf": [1.0] * len(vocabulary),
            "coef": [[0.0] * len(set(labels))] * len(vocabulary),
            "intercepts": [0.0] * len(set(labels)),
            "freq": freq,
            "total": total,
            "threshold": threshold,
            "keyword_margin": keyword_margin,
            "max_chars": max_chars,
        }
    )
    vectoriser = TfidfVectorizer(analyzer=draft.words, vocabulary=vocabulary, sublinear_tf=True)
    matrix = vectoriser.fit_transform(texts)
    regression = LogisticRegression(C=c, max_iter=3000)
    regression.fit(matrix, list(labels))
    classes = [str(k) for k in regression.classes_]
    coef, intercepts = regression.coef_, regression.intercept_
    if len(classes) == 2:  # one row for the second class against the first: the same as ±half for each
        coef, intercepts = [-coef[0] / 2, coef[0] / 2], [-intercepts[0] / 2, intercepts[0] / 2]
    rows = list(zip(*coef, strict=True))  # one row per word
    return {
        "format": FORMAT,
        "version": VERSION,
        "labels": classes,
        "words": vocabulary,
        "idf": [round(float(x), 6) for x in vectoriser.idf_],
        "coef": [[round(float(x), 6) for x in row] for row in rows],
        "intercepts": [round(float(x), 6) for x in intercepts],
        "freq": freq,
        "total": total,
        "threshold": threshold,
        "keyword_margin": keyword_margin,
        "max_chars": max_chars,
        "trained_on": {"messages": len(texts), "labels": dict(sorted(_count(labels).items())), **(trained_on or {})},
    }


def _count(labels: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for label in labels:
        found[label] = found.get(label, 0) + 1
    return found

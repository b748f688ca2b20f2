"""Reading and writing a message model file (JSON, UTF-8): the edge of :mod:`rules.messages`.

The file is versioned beside the rule table it serves (``ershili.yaml`` → ``ershili.messages.json`` by
convention): it records the table version it was trained with, and the dispatcher refuses none of it
silently: a file that is not a model raises ``ValueError`` with the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from rules.messages import MessageModel


class MessageModelError(ValueError):
    """A message model file that cannot be used; the message names the file and what is wrong."""


def read_message_model(path: str | Path) -> MessageModel:
    """The model in ``path``; :class:`MessageModelError` naming the file when it cannot be read or is not a
    model."""
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())  # a third of the time json takes for the weights
    except (OSError, orjson.JSONDecodeError) as exc:
        raise MessageModelError(f"{path}: cannot read a message model: {exc}") from None
    if not isinstance(data, dict):
        raise MessageModelError(f"{path}: a message model is a JSON object")
    try:
        return MessageModel.from_data(data)
    except ValueError as exc:
        raise MessageModelError(f"{path}: {exc}") from None


def write_message_model(data: dict[str, Any], path: str | Path) -> None:
    """Write model data (as :func:`rules.training.train` returns it) to ``path``, compact UTF-8 JSON."""
    MessageModel.from_data(data)  # refuse to write what could not be read back
    Path(path).write_bytes(orjson.dumps(data))

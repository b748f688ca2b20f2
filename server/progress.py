"""Progress of a long command on stderr: a bar on a terminal, otherwise a line a minute (logs, CI, ``nohup``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import typer

_STEPS = 1000


class Progress:
    """The share of the work done (0 to 1), shown while a command runs.

    On a terminal (``stream.isatty()``) a bar, otherwise a line every ``every_s`` seconds of ``clock``:
    ``label: 42% (detail)``, ``detail`` asked of ``describe`` at that moment. Leaving the ``with`` block
    normally finishes the work: the bar ends at 100 % and a last line says so; after an error it stays where
    it was. Shares only grow (a smaller one is ignored).
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[], str] | None = None,
    ) -> None:
        self.label = label
        self.stream = stream
        self.every_s = every_s
        self.clock = clock
        self.describe = describe
        self.done = 0  # in thousandths
        self._bar: Any = None
        self._bar_context: Any = None
        self._last_line = 0.0

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            self._bar_context = typer.progressbar(length=_STEPS, label=self.label, file=self.stream)
            self._bar = self._bar_context.__enter__()
        else:
            self._last_line = self.clock()
        return self

    def __call__(self, share: float) -> None:
        self.update(share)

    def update(self, share: float, *, quiet: bool = False) -> None:
        step = int(min(max(share, 0.0), 1.0) * _STEPS) - self.done
        if step > 0:
            self.done += step
            if self._bar is not None:
                self._bar.update(step)
        if self._bar is None and not quiet and self.clock() - self._last_line >= self.every_s:
            self._line()

    def _line(self) -> None:
        self._last_line = self.clock()
        detail = f" ({self.describe()})" if self.describe is not None else ""
        self.stream.write(f"{self.label}: {self.done / 10:.0f}%{detail}\n")
        self.stream.flush()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.update(1.0, quiet=True)
            if self._bar is None:
                self._line()
        if self._bar_context is not None:
            self._bar_context.__exit__(kind, error, trace)

"""The scoring table (考核赋分表) the supervision and assessment office (综合督考办) writes: how posts, teams
and modules earn and lose points from the incidents of a period.

Two shapes, like the rule table: the table as written (:class:`ScoringTable`, unknown keys refused, every
mistake reported as ``file:line: what is wrong`` through the rule table's loader), then the checks against
the rule table in force (:func:`check_scoring`: the township is the table's). The arithmetic is in
:mod:`dispatcher.assessment`; the language is written out in docs/reports.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules.loader import Problem, RuleTableError, _Locator, _parse, _pydantic_message, _read
from rules.matcher import RuleBook

BUNDLED_SCORING = Path(__file__).resolve().parent / "tables" / "ershili-scoring.yaml"

#: The incident priorities of the rule table (1 the most urgent).
PRIORITIES = (1, 2, 3, 4, 5)

Points = Annotated[float, Field(ge=-100, le=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ByPriority(_Strict):
    """Points for each incident priority; every priority 1–5 must be given (no silent zero)."""

    p1: Points
    p2: Points
    p3: Points
    p4: Points
    p5: Points

    def of(self, priority: int) -> float:
        value: float = getattr(self, f"p{min(max(priority, 1), 5)}")
        return value


class PostPoints(_Strict):
    """岗位赋分: the officer holding the lead of each incident due in the period."""

    base: Points = 100
    on_time_close: ByPriority
    late_close: ByPriority
    open_past_deadline: ByPriority


class TeamPoints(_Strict):
    """组团积分: the sum of the post points earned on the team's incidents (base left out), plus these."""

    missed_acknowledgement: ByPriority
    returned: Points = 0  # per 回退 the team sent; 0 when returns are blamed on the rule table only


class ModuleMethod(StrEnum):
    MEAN = "mean"  # the mean of its teams' points
    SUM = "sum"


class ModuleScore(_Strict):
    """模块评分: formed from the points of the teams that led its incidents in the period."""

    from_teams: ModuleMethod = ModuleMethod.MEAN
    base: Points = 100


class ScoringTable(_Strict):
    version: str = Field(min_length=1, max_length=64)
    township: str = Field(min_length=1, max_length=64)
    assumptions: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(min_length=1, max_length=50)
    post_points: PostPoints
    team_points: TeamPoints
    module_score: ModuleScore = ModuleScore()


class LoadedScoring:
    """A validated scoring table and where each of its values was written."""

    def __init__(self, table: ScoringTable, locator: _Locator) -> None:
        self.table = table
        self._locator = locator

    def where(self, *loc: str | int) -> tuple[str, int]:
        return self._locator.where(loc)


def load_scoring_text(text: str, *, source: str = "<scoring>") -> LoadedScoring:
    """Validate a scoring table given as YAML text; raises :class:`RuleTableError` with every problem's
    file and line."""
    node, data = _parse(text, source)
    located = _Locator(source, node)
    problems = list(located.duplicate_keys())
    if problems:
        raise RuleTableError(problems)
    try:
        table = ScoringTable.model_validate(data)
    except ValidationError as exc:
        raise RuleTableError([located.problem(err["loc"], _pydantic_message(err)) for err in exc.errors()]) from None
    problems = list(_signs(table, located))
    if problems:
        raise RuleTableError(problems)
    return LoadedScoring(table, located)


#: (section, key, sign): earned points are 0 or more, lost points 0 or less.
_SIGNS = (
    ("post_points", "on_time_close", 1),
    ("post_points", "late_close", -1),
    ("post_points", "open_past_deadline", -1),
    ("team_points", "missed_acknowledgement", -1),
)


def _signs(table: ScoringTable, located: _Locator) -> Iterator[Problem]:
    for section, key, sign in _SIGNS:
        values: ByPriority = getattr(getattr(table, section), key)
        for p in PRIORITIES:
            v = values.of(p)
            if v * sign < 0:
                what = "earns points (write 0 or more)" if sign > 0 else "loses points (write 0 or less)"
                yield located.problem((section, key, f"p{p}"), f"{section}.{key}.p{p} is {v:g}: this {what}")


def load_scoring(path: str | Path = BUNDLED_SCORING) -> LoadedScoring:
    path = Path(path)
    return load_scoring_text(_read(path, str(path)), source=str(path))


def check_scoring(loaded: LoadedScoring, book: RuleBook) -> list[Problem]:
    """What the scoring table says that the rule table in force contradicts, each with file and line."""
    found = []
    if loaded.table.township != book.township_id:
        source, line = loaded.where("township")
        found.append(
            Problem(source, line, f"township {loaded.table.township!r}: the rule table is {book.township_id!r}")
        )
    return found

"""What a YAML document may cost before anything builds it: nodes after expanding aliases, and depth.

PyYAML shares one object for every alias of an anchor, so building a document is cheap; it is
everything that walks the result afterwards (schema validation, finding a value's line) that pays
for each alias again. Nine lines of anchors nine deep ("billion laughs") then stand for 9⁹ nodes
and keep a thread busy for minutes. :func:`over_budget` reads the parser's events once, without
building anything and without recursion, and stops at the first event past the budget, so the
time it takes is bounded by the text's length. Pure: no I/O, safe to call on any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class YamlBudget:
    #: Nodes (scalars, lists, mappings) the document stands for once every alias is expanded.
    #: The bundled township's table and catalogue hold about 8,000.
    max_nodes: int = 250_000
    #: Lists and mappings nested in each other (a zone's polygon is 7 deep).
    max_depth: int = 64


@dataclass(frozen=True, slots=True)
class OverBudget:
    """Where the document went past its budget (1-based line) and why."""

    line: int
    message: str


def over_budget(text: str, budget: YamlBudget = YamlBudget()) -> OverBudget | None:
    """None when ``text`` fits ``budget``; else the first place it does not.

    Also refuses an alias inside the node its anchor names (a document that contains itself).
    Syntax errors and undefined aliases are left to the parser that builds the document (it
    reports them with their line); raises nothing itself but what ``yaml.parse`` raises.
    """
    finished: dict[str, int] = {}  # anchor -> nodes its node stands for
    opened: list[tuple[str | None, int]] = []  # the collections being read: (anchor, nodes before it)
    nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.CollectionStartEvent):
            if len(opened) >= budget.max_depth:
                return OverBudget(line, f"lists and mappings are nested more than {budget.max_depth} deep")
            opened.append((event.anchor, nodes))
            nodes += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = opened.pop()
            if anchor is not None:
                finished[anchor] = nodes - before
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor is not None:
                finished[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in opened):
                return OverBudget(line, f"alias *{event.anchor} is used inside the node it names")
            nodes += finished.get(event.anchor or "", 0)
        if nodes > budget.max_nodes:
            return OverBudget(
                line, f"the document stands for more than {budget.max_nodes} values once its aliases are expanded"
            )
    return None

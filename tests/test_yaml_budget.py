"""The YAML budget, table-driven: nodes counted once every alias is expanded, depth, self-reference."""

from __future__ import annotations

import pytest

from rules.yaml_budget import OverBudget, YamlBudget, over_budget

SMALL = YamlBudget(max_nodes=10, max_depth=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2, 3, 4, 5, 6, 7, 8, 9]", None),  # the list and its nine items: 10
        (
            "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
            OverBudget(1, "the document stands for more than 10 values once its aliases are expanded"),
        ),
        ("a: &a [1, 2]\nb: *a", None),  # the mapping, two keys, each list of 3: 9
        (
            "a: &a [1, 2]\nb: *a\nc: *a",
            OverBudget(3, "the document stands for more than 10 values once its aliases are expanded"),
        ),
        (
            "a: &a 1\nb: *a\nc: *a\nd: *a\ne: *a",
            OverBudget(5, "the document stands for more than 10 values once its aliases are expanded"),
        ),
        ("- &b {x: 1}\n- {<<: *b}", None),  # a merge key's alias counts: 1 + 3 + 1 + 1 + 3 = 9
        (
            "- &b {x: 1}\n- {<<: *b, y: 2}",
            OverBudget(2, "the document stands for more than 10 values once its aliases are expanded"),
        ),
        ("[[[1]]]", None),
        ("[[[[1]]]]", OverBudget(1, "lists and mappings are nested more than 3 deep")),
        ("a: &a\n  - *a", OverBudget(2, "alias *a is used inside the node it names")),
        ("a: *undefined", None),  # left to the parser that builds it, which names it
    ],
)
def test_over_budget(text: str, expected: OverBudget | None) -> None:
    assert over_budget(text, SMALL) == expected

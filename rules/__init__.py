"""The rule table: the township's responsibility boundary list (职责边界清单).

A table is written in YAML (:mod:`rules.table` is its schema), validated once at load
(:mod:`rules.loader`, every mistake reported with file and line), compiled into an immutable,
indexed matcher (:mod:`rules.matcher`) whose routing is pure, checked for gaps, overlaps and
unreachable rules (:mod:`rules.checker`) and explained (:mod:`rules.explain`).
"""

from rules.loader import LoadedTable, RuleTableError, load_source, load_source_text, load_table, load_table_text
from rules.matcher import Decision, RoutingInput, RuleBook, compile_table

__all__ = [
    "Decision",
    "LoadedTable",
    "RoutingInput",
    "RuleBook",
    "RuleTableError",
    "compile_table",
    "load_source",
    "load_source_text",
    "load_table",
    "load_table_text",
]

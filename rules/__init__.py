"""The rule table: the township's responsibility boundary list (职责边界清单).

A table is written in YAML (:mod:`rules.table` is its schema), validated once at load
(:mod:`rules.loader`, every mistake reported with file and line) and compiled into an
immutable, indexed matcher (:mod:`rules.matcher`) whose routing is pure.
"""

from rules.loader import RuleTableError, load_table, load_table_text
from rules.matcher import Decision, RoutingInput, RuleBook, compile_table

__all__ = [
    "Decision",
    "RoutingInput",
    "RuleBook",
    "RuleTableError",
    "compile_table",
    "load_table",
    "load_table_text",
]

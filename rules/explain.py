"""``explain``: why a report went where it went, in terms a township's staff can check.

For one input it gives the decision, how the category was found (reported, or which keywords
chose it), the zones the report fell in, the rule that won with each of its conditions and why it
held, the rules that also held but lost (and on what: precedence or specificity), and the nearest
rules that did not hold with the condition(s) that failed. Pure: it routes through the same
compiled :class:`~rules.matcher.RuleBook` as the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rules.matcher import CompiledRule, Condition, Decision, RoutingInput, RuleBook
from rules.workdays import format_window


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule_id: str
    precedence: int
    specificity: int
    conditions: tuple[Condition, ...]

    @property
    def held(self) -> bool:
        return all(c.held for c in self.conditions)

    @property
    def failed(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if not c.held)


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    category_source: str  # "reported", "keywords" or "none"
    zones: tuple[str, ...]
    winner: RuleTrace | None
    also_held: tuple[RuleTrace, ...]
    nearest_misses: tuple[RuleTrace, ...]
    model_words: tuple[tuple[str, float], ...] = ()  # the words weighing most for the model's best class


def explain(book: RuleBook, item: RoutingInput, *, misses: int = 5) -> Explanation:
    decision = book.route(item)
    category = decision.category
    source = "reported" if item.category is not None else ("keywords" if category is not None else "none")
    message = decision.message
    model_words: tuple[tuple[str, float], ...] = ()
    if message is not None and book.messages is not None:
        source = "none" if message.decided_by == "triage" else message.decided_by
        if message.model.label is not None:
            model_words = tuple(book.messages.explain(item.description, message.model.label))
    zones = decision.zones
    situation = book.situation(item.at)
    traces: list[tuple[CompiledRule, RuleTrace]] = []
    for rule in book.candidates(category) if category is not None else []:
        conditions = tuple(rule.conditions(category, zones, situation, item))
        rank = rule.rank(category) if category is not None else (0, 0, rule.index)
        traces.append((rule, RuleTrace(rule.id, rule.precedence, -rank[1], conditions)))
    winner = next((t for r, t in traces if r.id == decision.rule_id), None)
    held = [t for _, t in traces if t.held and t is not winner]
    missed = sorted((t for _, t in traces if not t.held), key=lambda t: len(t.failed))
    return Explanation(
        decision=decision,
        category_source=source,
        zones=zones,
        winner=winner,
        also_held=tuple(held),
        nearest_misses=tuple(missed[:misses]),
        model_words=model_words,
    )


def _trace_json(trace: RuleTrace) -> dict[str, Any]:
    return {
        "rule": trace.rule_id,
        "precedence": trace.precedence,
        "specificity": trace.specificity,
        "conditions": [{"name": c.name, "held": c.held, "detail": c.detail} for c in trace.conditions],
    }


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """The explanation as plain JSON-ready data (the API answer and ``rules explain --json``)."""
    d = explanation.decision
    classification = d.classification
    return {
        "table_version": d.table_version,
        "category": d.category,
        "category_source": explanation.category_source,
        "keywords": None
        if classification is None
        else {
            "chosen": classification.category,
            "score": classification.score,
            "ranking": [{"category": c, "score": s} for c, s in classification.ranking],
            "hits": [{"word": h.word, "category": h.category, "weight": h.weight} for h in classification.hits],
        },
        "model": None
        if d.message is None
        else {
            "decided_by": d.message.decided_by,
            "label": d.message.label,
            "keyword_margin": d.message.keyword_margin,
            "needed_margin": d.message.needed_margin,
            "threshold": d.message.threshold,
            "top": [{"label": label, "probability": round(p, 4)} for label, p in d.message.model.top],
            "words": [{"word": w, "weight": round(x, 4)} for w, x in explanation.model_words],
        },
        "zones": list(explanation.zones),
        "decision": {
            "rule": d.rule_id,
            "owner": d.owner,
            "module": d.module,
            "queue": d.queue.value if d.queue else None,
            "handover": d.handover,
            "lead": d.lead,
            "support": list(d.support),
            "priority": d.priority,
            "ack_within_s": d.ack_within.total_seconds() if d.ack_within else None,
            "arrive_within_s": d.arrive_within.total_seconds() if d.arrive_within else None,
            "resolve_within_s": d.resolve_within.total_seconds() if isinstance(d.resolve_within, timedelta) else None,
            "resolve_within": format_window(d.resolve_within) if d.resolve_within is not None else None,
            "escalation": [
                {"after_s": t.after.total_seconds(), "level": t.level, "name": t.name, "title": t.title}
                for t in d.escalation
            ],
        },
        "winner": _trace_json(explanation.winner) if explanation.winner else None,
        "also_held": [_trace_json(t) for t in explanation.also_held],
        "nearest_misses": [
            {**_trace_json(t), "failed": [c.name for c in t.failed]} for t in explanation.nearest_misses
        ],
    }


def explanation_text(explanation: Explanation) -> str:
    """A short human summary for the terminal."""
    d = explanation.decision
    lines = [f"table {d.table_version}: {d.category!r} ({explanation.category_source}) → {d.owner}"]
    if d.classification is not None:
        words = [f"{h.word}+{h.weight}" for h in d.classification.hits if h.category == d.category]
        lines.append(f"  keywords: {', '.join(words) or 'none'} (score {d.classification.score})")
        ranking = ", ".join(f"{c} {s}" for c, s in d.classification.ranking[:3])
        lines.append(f"  keyword ranking: {ranking or 'nothing found'}")
    if d.message is not None:
        m = d.message
        top = ", ".join(f"{label} {p:.2f}" for label, p in m.model.top)
        lines.append(
            f"  model: {top} (decided by {m.decided_by}: keywords led by {m.keyword_margin}, "
            f"{m.needed_margin} needed; model threshold {m.threshold:.2f})"
        )
        if explanation.model_words:
            lines.append("  model's words: " + ", ".join(f"{w} {x:+.2f}" for w, x in explanation.model_words))
    lines.append(f"  zones: {list(explanation.zones) or 'none'}")
    if explanation.winner is None:
        lines.append(f"  no rule holds: queue {d.queue}")
    else:
        w = explanation.winner
        lines.append(f"  rule {w.rule_id} (precedence {w.precedence}, specificity {w.specificity}):")
        lines += [f"    ✓ {c.name}: {c.detail}" for c in w.conditions]
    for t in explanation.also_held:
        lines.append(f"  also held, lost on precedence/specificity: {t.rule_id} ({t.precedence}, {t.specificity})")
    for t in explanation.nearest_misses:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in t.failed)
        lines.append(f"  ✗ {t.rule_id}: {failed}")
    return "\n".join(lines)

"""Disparity report: does a filter rule remove documents that mention an identity axis more often?

Following Dodge et al. (2021), for every stage, rule and identity axis it compares the removal rate among
documents that mention the axis with the rate among documents that do not. Input per document: the stage
name, the axes it mentions (``representation.mentioned_axes`` on the text the stage received) and the
removal reason (``None`` if kept). Rates are over all documents that entered the stage, so a document
removed by another rule counts as not removed by this one.

Rules reported per stage: every reason seen, ``<prefix>:*`` for a reason prefix with more than one reason
(all ``gopher_quality:...`` together), and ``*`` (removed for any reason). Axes: every axis of the
lexicon plus ``any`` (mentions at least one axis).

The accumulator is plain dicts and counts, so it merges by addition (``merge_accumulators``; the bias
report keeps one per shard, as JSON: ``accumulator_to_json``). Pure: no Beam, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.bias.lexicon import AXES
from pipelines.bias.representation import mentioned_axes

ANY_AXIS = "any"
ANY_RULE = "*"

# stage -> {"docs": n, "mention": {axis: n}, "removed": {rule: n}, "removed_mention": {(rule, axis): n}}
Accumulator = dict[str, dict[str, Any]]


def new_accumulator() -> Accumulator:
    return {}


def _stage(acc: Accumulator, stage: str) -> dict[str, Any]:
    if stage not in acc:
        acc[stage] = {"docs": 0, "mention": {}, "removed": {}, "removed_mention": {}}
    return acc[stage]


def _bump(d: dict, key: Any, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


def add_document(acc: Accumulator, stage: str, axes: Iterable[str], reason: str | None) -> Accumulator:
    """Count one document of ``stage`` that mentions ``axes`` and was removed for ``reason`` (or kept)."""
    st = _stage(acc, stage)
    axes = set(axes)
    if axes:
        axes.add(ANY_AXIS)
    st["docs"] += 1
    for axis in axes:
        _bump(st["mention"], axis)
    if reason is not None:
        _bump(st["removed"], reason)
        for axis in axes:
            _bump(st["removed_mention"], (reason, axis))
    return acc


def add_text(acc: Accumulator, stage: str, text: str, lang: str | None, reason: str | None) -> Accumulator:
    """``add_document`` with the axes detected in ``text`` by ``representation.mentioned_axes``."""
    return add_document(acc, stage, mentioned_axes(text, lang), reason)


def merge_accumulators(*accs: Accumulator) -> Accumulator:
    """Sum of accumulators (new object; inputs unchanged)."""
    out: Accumulator = {}
    for acc in accs:
        for stage, st in acc.items():
            o = _stage(out, stage)
            o["docs"] += st["docs"]
            for name in ("mention", "removed", "removed_mention"):
                for key, n in st[name].items():
                    _bump(o[name], key, n)
    return out


def accumulator_to_json(acc: Accumulator) -> dict[str, Any]:
    """``acc`` with its ``(reason, axis)`` keys as ``"reason\taxis"`` strings (JSON-able)."""
    return {
        stage: {**st, "removed_mention": {f"{r}\t{a}": n for (r, a), n in st["removed_mention"].items()}}
        for stage, st in acc.items()
    }


def accumulator_from_json(data: Mapping[str, Any]) -> Accumulator:
    """Inverse of :func:`accumulator_to_json`."""
    out: Accumulator = {}
    for stage, st in data.items():
        mention = {tuple(k.split("\t", 1)): n for k, n in st["removed_mention"].items()}
        out[stage] = {
            **st,
            "mention": dict(st["mention"]),
            "removed": dict(st["removed"]),
            "removed_mention": mention,
        }
    return out


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _z_two_proportions(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-proportion z statistic with pooled variance; None when undefined."""
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var <= 0:
        return None
    return (x1 / n1 - x2 / n2) / math.sqrt(var)


def _rules(removed: Mapping[str, int], removed_mention: Mapping[tuple[str, str], int]):
    """(rule, removed count, {axis: removed count among mentioning docs}) for reasons, prefixes and '*'."""
    per_reason: dict[str, tuple[int, dict[str, Any]]] = {r: (n, {}) for r, n in removed.items()}
    for (reason, axis), n in removed_mention.items():
        per_reason[reason][1][axis] = n
    groups: dict[str, list[str]] = {}
    for reason in per_reason:
        if ":" in reason:
            groups.setdefault(reason.split(":", 1)[0] + ":*", []).append(reason)
    groups = {g: members for g, members in groups.items() if len(members) > 1}
    groups[ANY_RULE] = list(per_reason)
    out = [(r, n, ax) for r, (n, ax) in sorted(per_reason.items())]
    for group, members in sorted(groups.items()):
        total = sum(per_reason[m][0] for m in members)
        by_axis: dict[str, int] = {}
        for m in members:
            for axis, n in per_reason[m][1].items():
                by_axis[axis] = by_axis.get(axis, 0) + n
        out.append((group, total, by_axis))
    return out


def disparity_rows(acc: Accumulator, axes: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per (stage, rule, axis): counts, removal rates with / without a mention, ratio, z.

    ``ratio`` = rate_mention / rate_no_mention (None when the latter is 0 or undefined); ``difference`` =
    rate_mention - rate_no_mention; ``z`` the two-proportion z statistic (positive: the rule removes
    documents mentioning the axis more often).
    """
    axes = list(axes) if axes is not None else [*AXES, ANY_AXIS]
    rows = []
    for stage in sorted(acc):
        st = acc[stage]
        n = st["docs"]
        for rule, removed, by_axis in _rules(st["removed"], st["removed_mention"]):
            for axis in axes:
                n_m = st["mention"].get(axis, 0)
                r_m = by_axis.get(axis, 0)
                n_o, r_o = n - n_m, removed - r_m
                rate_m, rate_o = _rate(r_m, n_m), _rate(r_o, n_o)
                rows.append(
                    {
                        "stage": stage,
                        "rule": rule,
                        "axis": axis,
                        "docs_mention": n_m,
                        "docs_no_mention": n_o,
                        "removed_mention": r_m,
                        "removed_no_mention": r_o,
                        "rate_mention": rate_m,
                        "rate_no_mention": rate_o,
                        "ratio": rate_m / rate_o if rate_m is not None and rate_o else None,
                        "difference": rate_m - rate_o if rate_m is not None and rate_o is not None else None,
                        "z": _z_two_proportions(r_m, n_m, r_o, n_o),
                    }
                )
    return rows

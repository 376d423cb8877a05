"""Two adherence reports of the same prompts compared case by case (a paired test).

Accuracies of two models on ~100 prompts each have 95 % intervals some +-9 points wide, so
whether one is worse is not read off the accuracies: on the same cases, what counts is how
many one passes that the other fails, and the reverse. The exact McNemar test asks whether
those discordant cases could split so unevenly by chance (a two-sided binomial test with p =
1/2 on the discordant pairs). `compare_reports` does it per attribute.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import CinecubeError
from .adherence import ATTRIBUTES


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value for `gained` (new passes, old fails) against `lost`."""
    n = gained + lost
    if n == 0:
        return 1.0
    k = min(gained, lost)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _case_key(record: dict[str, Any]) -> tuple:
    return (record.get("prompt"), record.get("seed"), tuple(record.get("canvas") or ()))


def compare_reports(old: dict[str, Any], new: dict[str, Any], alpha: float = 0.05) -> dict[str, Any]:
    """Per attribute: cases both scored, accuracies, cases gained and lost, the exact McNemar p,
    and whether `new` is significantly worse (lost > gained and p < alpha). Reports must hold
    the same cases (prompt, seed and canvas), as `eval adherence` with the same --n and --seed
    makes them."""
    old_cases = {_case_key(r): r for r in old.get("records", [])}
    new_cases = {_case_key(r): r for r in new.get("records", [])}
    if not old_cases or set(old_cases) != set(new_cases):
        raise CinecubeError(
            "the two reports do not hold the same cases; make both with the same --n and --seed of eval adherence"
        )
    result: dict[str, Any] = {"cases": len(old_cases), "attributes": {}}
    for attribute in ATTRIBUTES:
        pairs = [
            (old_cases[k]["results"].get(attribute), new_cases[k]["results"].get(attribute))
            for k in old_cases
            if old_cases[k]["results"].get(attribute) is not None and new_cases[k]["results"].get(attribute) is not None
        ]
        gained = sum(1 for a, b in pairs if not a and b)
        lost = sum(1 for a, b in pairs if a and not b)
        p = mcnemar_exact(gained, lost)
        result["attributes"][attribute] = {
            "scored": len(pairs),
            "old_accuracy": sum(a for a, _ in pairs) / len(pairs) if pairs else None,
            "new_accuracy": sum(b for _, b in pairs) / len(pairs) if pairs else None,
            "gained": gained,
            "lost": lost,
            "p_value": p,
            "significantly_worse": lost > gained and p < alpha,
            "significantly_better": gained > lost and p < alpha,
        }
    result["any_significantly_worse"] = any(a["significantly_worse"] for a in result["attributes"].values())
    return result


def comparison_table(comparison: dict[str, Any]) -> str:
    lines = [f"{comparison['cases']} cases, compared case by case (exact McNemar)", ""]
    lines.append(f"{'attribute':<10} {'old':>7} {'new':>7} {'gained':>7} {'lost':>5} {'p':>7}  verdict")
    for name, a in comparison["attributes"].items():
        if a["old_accuracy"] is None:
            continue
        verdict = "worse" if a["significantly_worse"] else "better" if a["significantly_better"] else "no difference"
        lines.append(
            f"{name:<10} {a['old_accuracy']:>7.1%} {a['new_accuracy']:>7.1%} {a['gained']:>7} {a['lost']:>5} "
            f"{a['p_value']:>7.3f}  {verdict}"
        )
    return "\n".join(lines)

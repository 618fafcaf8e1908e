"""The evaluation gate: a candidate is promoted only when it beats its parent on every count."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def judge_candidate(
    parent: dict[str, Any], candidate: dict[str, Any], *, max_perplexity_rise: float
) -> GateDecision:
    """Compare metrics of the parent and the candidate (same data, measured side by side).

    - held-out feedback: the desirable-minus-undesirable log-likelihood margin must improve;
    - retention: perplexity on the base corpus may rise by at most ``max_perplexity_rise``;
    - golden set: the share of answers stating the required facts must not drop, and the
      expected answers' perplexity may rise by at most ``max_perplexity_rise``.
    """
    reasons: list[str] = []
    passed = True

    if not candidate.get("heldout_count"):
        passed = False
        reasons.append("FAIL feedback: no held-out feedback to judge the candidate by")
    else:
        before, after = parent["heldout_margin"], candidate["heldout_margin"]
        ok = after > before
        passed &= ok
        reasons.append(
            f"{'PASS' if ok else 'FAIL'} feedback: held-out margin {before:.3f} → {after:.3f}"
        )

    before, after = parent["retention_perplexity"], candidate["retention_perplexity"]
    bound = before * (1 + max_perplexity_rise)
    ok = after <= bound
    passed &= ok
    reasons.append(
        f"{'PASS' if ok else 'FAIL'} retention: perplexity {before:.3f} → {after:.3f}"
        f" (bound {bound:.3f}, +{max_perplexity_rise:.0%})"
    )

    if not candidate.get("golden_count"):
        reasons.append("PASS golden set: empty (curate it in the admin)")
    else:
        before, after = parent["golden_perplexity"], candidate["golden_perplexity"]
        bound = before * (1 + max_perplexity_rise)
        ok = after <= bound
        if "golden_fact_accuracy" in candidate:
            acc_before = parent["golden_fact_accuracy"]
            acc_after = candidate["golden_fact_accuracy"]
            ok_facts = acc_after >= acc_before
            reasons.append(
                f"{'PASS' if ok_facts else 'FAIL'} golden set: answers with the required facts"
                f" {acc_before:.0%} → {acc_after:.0%}"
            )
            ok &= ok_facts
        passed &= ok
        reasons.append(
            f"{'PASS' if after <= bound else 'FAIL'} golden set: perplexity {before:.3f} →"
            f" {after:.3f} (bound {bound:.3f})"
        )
    return GateDecision(passed=passed, reasons=reasons)

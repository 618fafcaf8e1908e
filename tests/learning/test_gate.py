"""The gate passes a candidate only when every comparison with its parent does."""

from learning.gate import judge_candidate

PARENT = {
    "heldout_count": 10,
    "heldout_margin": 0.5,
    "retention_perplexity": 2.0,
    "golden_count": 2,
    "golden_perplexity": 3.0,
    "golden_fact_accuracy": 1.0,
}


def candidate(**changes):
    return {**PARENT, "heldout_margin": 0.9, **changes}


def test_it_passes_a_candidate_that_improves_and_remembers():
    decision = judge_candidate(PARENT, candidate(), max_perplexity_rise=0.05)
    assert decision.passed
    assert len(decision.reasons) == 4  # feedback, retention, golden answers, golden perplexity
    assert all(reason.startswith("PASS") for reason in decision.reasons)


def test_it_fails_when_the_feedback_margin_does_not_improve():
    decision = judge_candidate(PARENT, candidate(heldout_margin=0.5), max_perplexity_rise=0.05)
    assert not decision.passed
    assert any(r.startswith("FAIL feedback") for r in decision.reasons)


def test_it_fails_when_retention_perplexity_rises_past_the_bound():
    ok = judge_candidate(PARENT, candidate(retention_perplexity=2.09), max_perplexity_rise=0.05)
    assert ok.passed
    bad = judge_candidate(PARENT, candidate(retention_perplexity=2.11), max_perplexity_rise=0.05)
    assert not bad.passed
    assert any(r.startswith("FAIL retention") for r in bad.reasons)


def test_it_fails_when_golden_answers_lose_their_facts():
    decision = judge_candidate(
        PARENT, candidate(golden_fact_accuracy=0.5), max_perplexity_rise=0.05
    )
    assert not decision.passed
    assert any(r.startswith("FAIL golden set: answers") for r in decision.reasons)


def test_it_fails_when_golden_perplexity_rises_past_the_bound():
    ok = judge_candidate(PARENT, candidate(golden_perplexity=3.14), max_perplexity_rise=0.05)
    assert ok.passed, ok.reasons
    bad = judge_candidate(PARENT, candidate(golden_perplexity=3.16), max_perplexity_rise=0.05)
    assert not bad.passed
    assert [r for r in bad.reasons if r.startswith("FAIL")] == [
        "FAIL golden set: perplexity 3.000 → 3.160 (bound 3.150)"
    ]


def test_it_fails_without_held_out_feedback():
    decision = judge_candidate(PARENT, candidate(heldout_count=0), max_perplexity_rise=0.05)
    assert not decision.passed


def test_an_empty_golden_set_does_not_block():
    parent = {k: v for k, v in PARENT.items() if not k.startswith("golden")} | {"golden_count": 0}
    decision = judge_candidate(parent, {**parent, "heldout_margin": 1.0}, max_perplexity_rise=0.05)
    assert decision.passed

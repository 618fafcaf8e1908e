"""Retention data for the gate and the replay, plain or grounded; the Fisher's sample."""

from __future__ import annotations

import pytest

from learning.evaluation import GoldenCase
from learning.fisher import fisher_sample
from learning.retention import gate_retention_pairs, retention_prompts


@pytest.mark.django_db  # the prompt names the business profile's business
def test_grounded_retention_prompts_show_the_intents_answer_as_the_article():
    plain = retention_prompts("gate", grounded=False, max_intents=3)
    grounded = retention_prompts("gate", grounded=True, max_intents=3)

    assert [(t[0]["content"], a) for t, a in plain] == gate_retention_pairs(max_intents=3)
    for (plain_turns, answer), (turns, same_answer) in zip(plain, grounded, strict=True):
        assert same_answer == answer
        assert turns[0]["role"] == "system" and "1. " in turns[0]["content"]
        assert answer in turns[0]["content"]
        assert turns[1:] == plain_turns


@pytest.mark.django_db  # the prompt names the business profile's business
def test_a_grounded_golden_case_shows_its_expected_answer():
    case = GoldenCase("Can I return shoes?", "Yes, within 30 days.", ("30 days",), grounded=True)

    system, question = case.turns

    assert "Yes, within 30 days." in system["content"]
    assert question == {"role": "user", "content": "Can I return shoes?"}
    assert GoldenCase("q", "a", ()).turns == [{"role": "user", "content": "q"}]


def test_the_fisher_sample_is_evenly_spaced_and_stable():
    items = [((i,), (i,), 1) for i in range(100)]

    sample = fisher_sample(items, 10)

    assert [s[0][0] for s in sample] == list(range(0, 100, 10))
    assert fisher_sample(items, 10) == sample
    assert fisher_sample(items[:4], 10) == items[:4]

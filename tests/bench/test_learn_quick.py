"""The learning benchmark's quick variant: the real loop must still learn the changed policy.

Simulated customers chat through the real consumer, their ratings become Feedback, and each
round's TrainingRun is executed, gated and promoted. Looser than the full benchmark's targets,
but it fails when learning stops: the changed intents must go from (near) nothing to a clear
share of right answers while the unchanged ones stay answered.
"""

from __future__ import annotations

import pytest

from bench.learning.customers import Crowd
from bench.learning.runner import (
    BenchConfig,
    build_quick_base,
    run_benchmark,
    write_retention_corpus,
)
from bench.learning.scenario import load_scenario

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quick_setup(settings, tmp_path):
    scenario = load_scenario(quick=True)
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.LEARNING_RETENTION_CORPUS = str(write_retention_corpus(scenario, tmp_path))
    settings.CHAT_MESSAGES_PER_MINUTE = 100_000
    settings.CHAT_FEEDBACK_PER_MINUTE = 100_000
    settings.LEARNING_TRAIN_UNREVIEWED_TEXT = True  # as bench/learn.py: corrections as typed
    base = build_quick_base(scenario, tmp_path / "checkpoints" / "quick-base")
    return scenario, base


def test_it_learns_the_changed_policy_through_the_real_loop(quick_setup):
    scenario, base_path = quick_setup
    # One customer at a time: the same feedback rows in the same order on every run and
    # database, so the outcome does not depend on which concurrent reply finished first.
    crowd = Crowd(
        per_changed_intent=6,
        unchanged=6,
        adversarial_visits=6,
        generous_visits=4,
        concurrency=1,
    )

    base, results = run_benchmark(scenario, str(base_path), [QUICK_CONFIG], rounds=3, crowd=crowd)

    rounds = results[QUICK_CONFIG.name]
    final = rounds[-1].measurement
    assert base.changed_seen <= 0.1 and base.changed_heldout <= 0.1  # it knew the old policy
    assert any(r.promoted for r in rounds[1:]), [r.gate_reasons for r in rounds[1:]]
    assert final.changed_seen - base.changed_seen >= SEEN_RISE
    assert final.changed_heldout - base.changed_heldout >= HELDOUT_RISE
    # 16 unchanged questions: one is 9% of what the base knew; a run lost two (82% of base).
    assert final.unchanged >= 0.75 * base.unchanged
    assert final.perplexity <= 1.05 * base.perplexity


# The quick model is ~30× smaller than the starter model: its own, pinned settings (larger step,
# less replay; the configuration this test was calibrated with).
# The defaults are tuned on the starter model (bench/learn.py full run).
QUICK_CONFIG = BenchConfig(
    "quick",
    {
        "lr": 3e-3,
        "anchor_strength": 10.0,
        "replay_share": 0.25,
        "regularizer": "l2sp",
        "unlikelihood_weight": 0.0,
    },
)
# Learning that stops leaves both rises at 0. With one customer at a time the run is the same
# on SQLite and PostgreSQL: +25 points on seen and +25 on held-out paraphrases (one held-out
# question is 6.25 points). Earlier concurrent runs varied from +6 to +44 on held-out with the
# row order; the bounds sit below the deterministic run, for other CPUs' float rounding.
SEEN_RISE = 0.15
HELDOUT_RISE = 0.10

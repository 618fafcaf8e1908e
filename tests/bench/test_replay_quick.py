"""The planted-correction replay (bench/replay.py) on the tiny models: through the real chat
consumer and a real training run, the defaults teach none of the planted corrections, and with
corrections trained as typed one network still gives at most its share of a run."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from bench import replay
from knowledge.demo.corpus import load_corpus
from learning.models import ModelVersion
from learning.versions import activate_version, register_version

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SESSIONS = 12  # 4 of them plant


@pytest.fixture
def replay_site(settings, tmp_path, tiny_encoder, tiny_checkpoint):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.CHAT_MESSAGES_PER_MINUTE = 100_000
    settings.CHAT_FEEDBACK_PER_MINUTE = 100_000
    call_command("seed_knowledge_base", verbosity=0)
    activate_version(
        register_version(replay.BASE_NAME, str(tiny_checkpoint), ModelVersion.Source.PRETRAINED)
    )
    return load_corpus()


def test_with_the_defaults_no_planted_correction_is_taught(replay_site):
    result = replay.run_arm(
        replay.ARMS["defaults"], replay_site, sessions=SESSIONS, seed=0, concurrency=1
    )

    assert result.status in {"succeeded", "rejected"}, result.reasons
    assert result.counts["feedback"] == SESSIONS  # every rating counts as a signal
    assert result.counts["corrections"] == 0
    assert result.counts["corrections_awaiting_review"] == SESSIONS // 3


def test_one_network_gives_at_most_its_share_even_with_corrections_as_typed(replay_site, settings):
    result = replay.run_arm(
        replay.ARMS["one-network"], replay_site, sessions=SESSIONS, seed=0, concurrency=1
    )

    cap = settings.LEARNING_MAX_NETWORK_SHARE  # 20%: 2 of the 12 rows
    assert result.counts["network_capped_feedback"] == SESSIONS // 3 - 2
    assert 0 < result.network_share <= cap
    assert result.counts["corrections"] == 2  # as typed: the two rows the cap let in

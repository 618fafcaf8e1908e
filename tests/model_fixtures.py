"""Fixtures that build tiny starter models (in a second or two, once per session) and register them.

``tiny_checkpoint`` answers the first few corpus intents' training questions word for word;
it is small so that tests stay fast, not to be good. ``forward_pass_breaks_at_step_3`` makes
the engine's model fail mid-reply; ``slow_steps`` makes each of its steps take 20 ms.
``system_turn_tokenizer`` renders the system turn of a grounded prompt.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest


def build_tiny_checkpoint(destination: Path, *, seed: int = 0) -> Path:
    from learning.starter.training import StarterConfig, build_starter_model
    from serving.checkpoints import write_checkpoint

    build = build_starter_model(StarterConfig.tiny(seed=seed))
    metadata = {
        "name": destination.name,
        "config": build.config.as_dict(),
        "data_hash": build.data_hash,
        "final_loss": build.losses[-1],
    }
    return write_checkpoint(build.model, build.tokenizer, destination, metadata)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Path of a tiny starter checkpoint (seed 0), built once per test session."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-seed-0")


@pytest.fixture(scope="session")
def second_tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-seed-1", seed=1)


@pytest.fixture
def active_model_version(db, tiny_checkpoint):
    """The tiny checkpoint registered as a starter ModelVersion and activated."""
    from learning.models import ModelVersion
    from learning.versions import activate_version, register_version
    from serving.backends import forget_active_version

    version = register_version("tiny-starter", str(tiny_checkpoint), ModelVersion.Source.STARTER)
    version = activate_version(version, note="test fixture")
    # Under a test transaction on_commit never runs: drop a lookup cached by an earlier test.
    forget_active_version()
    yield version
    forget_active_version()


@pytest.fixture
def second_model_version(db, second_tiny_checkpoint):
    """A differently seeded tiny checkpoint, registered with status ready (not active)."""
    from learning.models import ModelVersion
    from learning.versions import register_version

    return register_version(
        "tiny-starter-seed-1", str(second_tiny_checkpoint), ModelVersion.Source.STARTER
    )


@pytest.fixture
def forward_pass_breaks_at_step_3(monkeypatch):
    """The engine's third decoding step raises, as a lost device would, once (in any engine)."""
    from serving.engine import _Batch

    real_step = _Batch.step
    steps = 0

    def step(self):
        nonlocal steps
        steps += 1
        if steps == 3:
            raise RuntimeError("device lost")
        return real_step(self)

    monkeypatch.setattr(_Batch, "step", step)


@pytest.fixture
def slow_steps(monkeypatch):
    """Each decoding step takes at least 20 ms, so a test or a client can act between steps."""
    from serving.engine import _Batch

    real_step = _Batch.step

    def slow_step(self):
        time.sleep(0.02)
        return real_step(self)

    monkeypatch.setattr(_Batch, "step", slow_step)


@pytest.fixture(scope="session")
def system_turn_tokenizer(tiny_checkpoint):
    """The tiny checkpoint's tokenizer with a chat template that renders system turns (the
    starter's ignores them, as a pretrained model's template does not)."""
    from learning.starter.tokenizer import CHAT_TEMPLATE
    from serving.checkpoints import load_checkpoint

    tokenizer = load_checkpoint(tiny_checkpoint)[1]
    tokenizer.chat_template = CHAT_TEMPLATE.replace(
        "{% if message['role'] == 'user' %}",
        "{% if message['role'] == 'system' %}{{ 'system: ' + message['content'] + '<|end|>' }}"
        "{% elif message['role'] == 'user' %}",
    )
    return tokenizer

"""build_starter_model and ensure_base_model: deterministic, atomic, registered and activated."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from learning.management.commands.build_starter_model import Command as BuildCommand
from learning.models import ModelVersion

pytestmark = pytest.mark.django_db


def build(output: Path, *extra: str) -> str:
    out = io.StringIO()
    call_command("build_starter_model", "--tiny", "--output", str(output), *extra, stdout=out)
    return out.getvalue()


def weights(path: Path) -> dict:
    return load_file(path / "model.safetensors")


def test_it_builds_the_same_weights_from_the_same_seed(tmp_path):
    build(tmp_path / "a", "--no-activate", "--skip-eval")
    build(tmp_path / "b", "--no-activate", "--skip-eval")
    build(tmp_path / "c", "--no-activate", "--skip-eval", "--seed", "1")

    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert a.keys() == b.keys() == c.keys()
    assert all(a[name].equal(b[name]) for name in a)
    assert not all(a[name].equal(c[name]) for name in a)


def test_it_reports_progress_size_and_accuracy(tmp_path):
    output = build(tmp_path / "starter")

    assert re.search(r"^step \d+/\d+  loss \d+\.\d+", output, re.MULTILINE)
    assert re.search(r"^step (\d+)/\1  loss", output, re.MULTILINE)  # the last step too
    assert "parameters" in output and "MB" in output
    assert "accuracy_questions: " in output and "accuracy_eval_questions: " in output
    version = ModelVersion.objects.get()
    # The tiny model knows its four intents' training questions.
    assert version.metrics["accuracy_questions"] >= 0.9
    assert (tmp_path / "starter" / "metadata.json").exists()


def test_it_registers_and_activates_the_build_and_retires_the_previous_one(tmp_path):
    build(tmp_path / "first", "--skip-eval")
    first = ModelVersion.objects.get(name="first")
    assert (first.status, first.source) == ("active", "starter")
    assert first.checkpoint_path == str(tmp_path / "first")
    assert first.activated_at is not None

    build(tmp_path / "second", "--skip-eval", "--seed", "1")
    first.refresh_from_db()
    second = ModelVersion.objects.get(name="second")
    assert (first.status, second.status) == ("retired", "active")


def test_it_only_registers_with_no_activate(tmp_path):
    build(tmp_path / "quiet", "--skip-eval", "--no-activate")
    assert ModelVersion.objects.get().status == "ready"


def test_it_names_the_default_output_after_the_seed_and_a_hash(tmp_path, settings):
    settings.CHECKPOINT_DIR = tmp_path
    call_command("build_starter_model", "--tiny", "--skip-eval", stdout=io.StringIO())

    version = ModelVersion.objects.get()
    assert version.name.startswith("starter-0-") and len(version.name) == len("starter-0-") + 10
    assert Path(version.checkpoint_path) == tmp_path / version.name
    assert (tmp_path / version.name / "model.safetensors").exists()


def test_it_leaves_nothing_behind_when_saving_fails(tmp_path, monkeypatch):
    def save_half_then_fail(self, directory, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", save_half_then_fail)

    with pytest.raises(OSError, match="disk full"):
        build(tmp_path / "broken", "--skip-eval")
    assert list(tmp_path.iterdir()) == []
    assert not ModelVersion.objects.exists()


def test_it_refuses_to_overwrite_an_existing_checkpoint(tmp_path):
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")

    with pytest.raises(CommandError, match=r"already exists\. Use --force"):
        build(existing, "--skip-eval")
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert not ModelVersion.objects.exists()


def test_it_replaces_an_existing_checkpoint_with_force(tmp_path):
    build(tmp_path / "again", "--skip-eval")
    build(tmp_path / "again", "--skip-eval", "--force")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]
    version = ModelVersion.objects.get()
    assert (version.name, version.status) == ("again", "active")


def test_it_explains_its_options():
    text = BuildCommand().create_parser("manage.py", "build_starter_model").format_help()
    for option in ("--output", "--seed", "--epochs", "--tiny", "--no-activate", "--force"):
        assert option in text


def ensure(*extra: str) -> str:
    out = io.StringIO()
    call_command("ensure_base_model", *extra, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("base_model", "arguments"),
    [("starter", ()), ("", ()), ("smollm2", ("--tiny",))],  # --tiny: the starter, whatever is set
)
def test_it_builds_the_starter_model_once_when_nothing_is_active(
    tmp_path, settings, monkeypatch, base_model, arguments
):
    settings.CHECKPOINT_DIR = tmp_path
    settings.LEARNING_BASE_MODEL = base_model
    built = []

    def build_tiny_starter(self, *args, **options):
        built.append(options["tiny"])
        return real_handle(self, *args, **{**options, "tiny": True})

    real_handle = BuildCommand.handle
    monkeypatch.setattr(BuildCommand, "handle", build_tiny_starter)

    assert "is now active" in ensure(*arguments)
    assert "nothing to do" in ensure(*arguments)
    assert built == [bool(arguments)]  # once; the full-size starter unless --tiny was given

    version = ModelVersion.objects.get()
    assert (version.status, version.source) == ("active", "starter")


def test_it_leaves_an_active_version_alone(active_model_version, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    settings.LEARNING_BASE_MODEL = "/no/such/model"

    assert "tiny-starter is already active" in ensure()
    assert list(ModelVersion.objects.values_list("name", flat=True)) == ["tiny-starter"]


def test_it_activates_the_configured_base_model(tiny_checkpoint, settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    settings.LEARNING_BASE_MODEL = str(tiny_checkpoint)

    ensure()
    ensure()

    version = ModelVersion.objects.get()
    assert (version.status, version.source) == ("active", "pretrained")
    assert version.checkpoint_path == str(tiny_checkpoint)
    assert not list(tmp_path.glob("starter-*"))


def test_it_refuses_a_base_model_that_does_not_load(settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    settings.LEARNING_BASE_MODEL = str(tmp_path / "missing-model")

    with pytest.raises(CommandError, match="LEARNING_BASE_MODEL cannot be loaded"):
        ensure()
    assert not ModelVersion.objects.exists()


def test_it_asks_for_migrations_before_spending_minutes_on_training(tmp_path, monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("x", False)])
    output = tmp_path / "never-built"

    with pytest.raises(CommandError, match=r"run `manage\.py migrate` first"):
        build(output, "--skip-eval")
    assert not output.exists()

"""manage.py import_knowledge: what it says, --dry-run, --replace, and every problem listed
with nothing written."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from knowledge.models import KnowledgeArticle

pytestmark = pytest.mark.django_db

BANKING77 = Path("/work/shared/datasets/banking77/articles.json")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_knowledge", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def banking_file(tmp_path) -> Path:
    """The first twelve banking77 articles."""
    path = tmp_path / "banking.json"
    path.write_text(json.dumps(json.loads(BANKING77.read_text())[:12]))
    return path


def test_it_imports_a_file_and_says_what_changed(tiny_encoder, banking_file):
    out, _ = run(str(banking_file))

    assert f"{banking_file}: 12 article(s) read." in out
    assert "12 created:\n  + My card hasn't arrived yet\n" in out
    assert "  … and 2 more" in out
    assert "Imported: 12 created, 0 updated, 0 switched off, 0 unchanged; 12 article(s)" in out
    assert "embedding: " in out and "passages, about 0s left" in out
    assert KnowledgeArticle.objects.count() == 12
    card = KnowledgeArticle.objects.get(external_id="card_arrival")
    assert card.embedding_encoder == tiny_encoder.name
    assert len(card.example_questions.splitlines()) == 8

    out, _ = run(str(banking_file))
    assert "Imported: 0 created, 0 updated, 0 switched off, 12 unchanged; 0 article(s)" in out


def test_a_dry_run_lists_the_changes_and_writes_nothing(tiny_encoder, banking_file):
    out, _ = run(str(banking_file), "--dry-run")

    assert "12 would be created:" in out
    assert "Dry run: 12 would be created, 0 would be updated" in out
    assert "12 article(s) to embed. Nothing written." in out
    assert not KnowledgeArticle.objects.exists()


def test_replace_switches_off_what_the_file_no_longer_has(tiny_encoder, banking_file, tmp_path):
    run(str(banking_file))
    fewer = tmp_path / "fewer.json"
    articles = json.loads(banking_file.read_text())
    articles[0]["text"] = "A new answer."
    fewer.write_text(json.dumps(articles[:10]))

    out, _ = run(str(fewer), "--replace")

    assert "1 updated:\n  ~ My card hasn't arrived yet (text)\n" in out
    assert "2 switched off:\n  - " in out
    assert "1 updated, 2 switched off, 9 unchanged" in out
    assert KnowledgeArticle.objects.filter(is_active=False).count() == 2
    assert KnowledgeArticle.objects.count() == 12


def test_every_problem_is_listed_and_nothing_is_written(tiny_encoder, tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text(
        "title,text,example_questions,external_id\n"
        "Fine,An answer.,a question,1\n"
        ",No title.,,2\n"
        "No text,,,3\n"
    )

    with pytest.raises(CommandError, match=r"2 problem\(s\) in .*kb.csv: nothing was imported"):
        out, err = StringIO(), StringIO()
        call_command("import_knowledge", str(path), stdout=out, stderr=err)

    assert err.getvalue().splitlines() == [
        f"{path}:3: title: is required",
        f"{path}:4: text: is required",
    ]
    assert not KnowledgeArticle.objects.exists()


def test_an_unknown_extension_asks_for_the_format(tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text('{"title": "A", "text": "a"}\n')

    with pytest.raises(CommandError, match=r"Cannot tell the format of kb\.txt"):
        run(str(path))


def test_the_format_can_be_named(tiny_encoder, tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text('{"title": "A", "text": "a", "external_id": "a"}\n')

    out, _ = run(str(path), "--format", "jsonl")

    assert "Imported: 1 created" in out

"""export_knowledge writes what import_knowledge reads: exported, emptied and imported again,
the knowledge base has the same articles, in every format."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from knowledge.models import KnowledgeArticle
from tests.knowledge.articles import add_article

pytestmark = pytest.mark.django_db

FIELDS = ("title", "text", "example_questions", "topic", "external_id", "is_active")


@pytest.fixture
def knowledge_base(tiny_encoder):
    add_article(
        "Track order",
        "Follow the DHL link.\n\nOr log in: My Account > Orders.",
        topic="orders",
        questions="wheres my stuff\ntrak my parcel, please | now",
    )
    add_article("Return window", 'Within 30 days, "unworn".', topic="returns")
    add_article(
        "Returns: costs", "Free, with the label.", topic="returns", questions="free? | or not"
    )
    add_article("Gift wrapping", "3.50 EUR. Ünïcode — fine.", topic="")
    KnowledgeArticle.objects.filter(title="Return window").update(external_id="zendesk-360001")
    old = add_article("Old promotion", "Gone.", topic="promotions")
    old.is_active = False
    old.save()


def contents(*, active_only: bool = False) -> list[tuple]:
    rows = KnowledgeArticle.objects.order_by("title")
    if active_only:
        rows = rows.filter(is_active=True)
    return list(rows.values_list(*FIELDS))


@pytest.mark.parametrize(
    ("name", "format"),
    [("kb.json", "auto"), ("kb.jsonl", "auto"), ("kb.csv", "auto"), ("kb", "markdown")],
)
def test_an_export_imports_into_an_empty_knowledge_base_as_the_same_articles(
    knowledge_base, tmp_path, name, format
):
    before = contents()
    path = tmp_path / name
    out = StringIO()
    call_command("export_knowledge", str(path), "--all", "--format", format, stdout=out)
    assert "5 article(s) written to" in out.getvalue()
    KnowledgeArticle.objects.all().delete()

    call_command("import_knowledge", str(path), stdout=StringIO())

    assert contents() == before
    out = StringIO()
    call_command("import_knowledge", str(path), stdout=out)
    assert "0 created, 0 updated, 0 switched off, 5 unchanged" in out.getvalue()


def test_without_all_only_active_articles_are_exported(knowledge_base, tmp_path):
    path = tmp_path / "kb.csv"
    call_command("export_knowledge", str(path), stdout=StringIO())
    active = contents(active_only=True)
    KnowledgeArticle.objects.all().delete()

    call_command("import_knowledge", str(path), stdout=StringIO())

    assert contents() == active
    assert "Old promotion" not in path.read_text()


def test_markdown_export_files_an_article_under_its_topic(knowledge_base, tmp_path):
    call_command("export_knowledge", str(tmp_path / "kb"), "--all", stdout=StringIO())

    files = sorted(
        p.relative_to(tmp_path / "kb").as_posix() for p in (tmp_path / "kb").rglob("*.md")
    )
    assert files == [
        "gift-wrapping.md",
        "orders/track-order.md",
        "promotions/old-promotion.md",
        "returns/return-window.md",
        "returns/returns-costs.md",
    ]
    with pytest.raises(CommandError, match="exists and is not an empty folder"):
        call_command("export_knowledge", str(tmp_path / "kb"), stdout=StringIO())

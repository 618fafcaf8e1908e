"""Importing from the admin: upload → preview → confirm, problems shown with their lines,
only for staff who may add and change articles; and the export downloads."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from knowledge.models import ArticleRevision, KnowledgeArticle
from knowledge.signals import knowledge_imported
from tests.knowledge.articles import add_article

pytestmark = pytest.mark.django_db

LIST = reverse("admin:knowledge_knowledgearticle_changelist")
IMPORT = reverse("admin:knowledge_knowledgearticle_import")
CONFIRM = reverse("admin:knowledge_knowledgearticle_import_confirm")
EXPORT = reverse("admin:knowledge_knowledgearticle_export")

ARTICLES = [
    {"title": "Track order", "text": "Follow the DHL link.", "external_id": "kb-1"},
    {"title": "Return window", "text": "30 days.", "example_questions": ["how long?"]},
]


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def upload(client: Client, name: str, content: str | bytes, **fields: object):
    data = content.encode() if isinstance(content, str) else content
    return client.post(IMPORT, {"file": SimpleUploadedFile(name, data), **fields})


def test_the_article_list_links_to_import_and_export(staff_client):
    page = staff_client.get(LIST).content.decode()

    assert f'href="{IMPORT}"' in page
    assert f"{EXPORT}?format=csv&amp;all=1" in page


def test_upload_preview_and_confirm_import_the_file(
    tiny_encoder, staff_client, staff_user, django_capture_on_commit_callbacks
):
    add_article("Return window", "Old text.")
    announced = []

    def receiver(sender, result, **kwargs):
        announced.append(result)

    knowledge_imported.connect(receiver)

    preview = upload(staff_client, "kb.json", json.dumps(ARTICLES))

    assert preview.status_code == 200
    assert preview.context["problems"] == []
    result = preview.context["result"]
    assert [c.title for c in result.created] == ["Track order"]
    assert [(c.title, c.fields) for c in result.updated] == [
        ("Return window", ("text", "example_questions"))
    ]
    page = preview.content.decode()
    assert "1 would be created, 1 would be updated, 0 would be switched off" in page
    assert KnowledgeArticle.objects.count() == 1  # the preview writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        done = staff_client.post(CONFIRM, {"digest": preview.context["digest"]}, follow=True)

    knowledge_imported.disconnect(receiver)
    assert done.redirect_chain == [(LIST, 302)]
    assert (
        "Imported kb.json: 1 created, 1 updated, 0 switched off, 0 unchanged."
        in done.content.decode()
    )
    track = KnowledgeArticle.objects.get(external_id="kb-1")
    assert (track.updated_by, track.embedding_encoder) == (staff_user, tiny_encoder.name)
    assert KnowledgeArticle.objects.get(title="Return window").example_questions == "how long?"
    assert ArticleRevision.objects.get().text == "Old text."
    assert len(announced) == 1
    assert staff_client.post(CONFIRM, {"digest": preview.context["digest"]}).url == IMPORT


def test_a_file_with_problems_shows_each_and_cannot_be_imported(tiny_encoder, staff_client):
    bad = "title,text\nFine,ok\n,no title\nNo text,\n"

    preview = upload(staff_client, "kb.csv", bad)

    page = preview.content.decode()
    assert "2 problems in kb.csv" in page
    assert "kb.csv:3: title: is required" in page
    assert "kb.csv:4: text: is required" in page
    assert 'name="digest"' not in page
    assert staff_client.post(CONFIRM, {"digest": "anything"}).url == IMPORT
    assert not KnowledgeArticle.objects.exists()


def test_confirming_reads_the_file_again_against_the_knowledge_base_as_it_is_now(
    tiny_encoder, staff_client
):
    preview = upload(staff_client, "kb.jsonl", "\n".join(json.dumps(a) for a in ARTICLES))
    assert len(preview.context["result"].created) == 2
    add_article("Return window", "30 days.", questions="how long?")  # someone was quicker

    staff_client.post(CONFIRM, {"digest": preview.context["digest"]})

    assert KnowledgeArticle.objects.filter(title="Return window").count() == 1
    assert KnowledgeArticle.objects.count() == 2


def test_a_confirmation_of_an_older_preview_imports_nothing(tiny_encoder, staff_client):
    first = upload(staff_client, "a.json", json.dumps(ARTICLES[:1]))
    upload(staff_client, "b.json", json.dumps(ARTICLES[1:]))

    response = staff_client.post(CONFIRM, {"digest": first.context["digest"]})

    assert response.status_code == 200
    assert response.context["upload"].name == "b.json"
    assert not KnowledgeArticle.objects.exists()


def test_replace_and_a_zip_of_markdown_files(tiny_encoder, staff_client):
    add_article("Gift wrapping", "3.50 EUR.")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as files:
        files.writestr("kb/track.md", "---\ntopic: orders\n---\n# Track order\n\nThe DHL link.\n")

    preview = upload(staff_client, "kb.zip", archive.getvalue(), replace="on")
    assert [c.title for c in preview.context["result"].switched_off] == ["Gift wrapping"]
    staff_client.post(CONFIRM, {"digest": preview.context["digest"]})

    track = KnowledgeArticle.objects.get(external_id="kb/track.md")
    assert (track.title, track.topic, track.text) == ("Track order", "orders", "The DHL link.")
    assert not KnowledgeArticle.objects.get(title="Gift wrapping").is_active


def test_an_unreadable_upload_is_refused_on_the_form(staff_client):
    response = upload(staff_client, "kb.txt", "whatever")

    assert response.status_code == 200
    assert "Upload a .json, .jsonl" in response.content.decode()


def test_importing_needs_the_permissions_to_add_and_change_articles(django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", password="x", is_staff=True)
    clerk.user_permissions.add(
        Permission.objects.get(codename="view_knowledgearticle"),
        Permission.objects.get(codename="change_knowledgearticle"),
    )
    client = Client()
    client.force_login(clerk)

    assert client.get(IMPORT).status_code == 403
    assert client.post(CONFIRM).status_code == 403
    assert f'href="{IMPORT}"' not in client.get(LIST).content.decode()
    assert client.get(EXPORT).status_code == 200  # viewing is enough to export

    clerk.user_permissions.add(Permission.objects.get(codename="add_knowledgearticle"))
    assert client.get(IMPORT).status_code == 200


def test_the_export_downloads_what_import_reads(tiny_encoder, staff_client):
    add_article("Track order", "The DHL link.", questions="wheres my stuff")
    off = add_article("Old promotion", "Gone.")
    off.is_active = False
    off.save()

    active = staff_client.get(EXPORT, {"format": "json"})
    everything = staff_client.get(EXPORT, {"format": "csv", "all": "1"})
    markdown = staff_client.get(EXPORT, {"format": "markdown"})

    assert active["Content-Disposition"].startswith('attachment; filename="knowledge-')
    assert json.loads(active.content)["articles"] == [
        {
            "title": "Track order",
            "text": "The DHL link.",
            "example_questions": ["wheres my stuff"],
            "topic": "orders",
            "external_id": "",
            "is_active": True,
        }
    ]
    assert "Old promotion" in everything.content.decode()
    names = zipfile.ZipFile(io.BytesIO(markdown.content)).namelist()
    assert [name.split("/", 1)[1] for name in names] == ["orders/track-order.md"]


def test_the_export_action_downloads_the_selected_articles(tiny_encoder, staff_client):
    track = add_article("Track order")
    add_article("Return window")

    response = staff_client.post(
        LIST, {"action": "export_selected", "_selected_action": [track.pk]}
    )

    assert [a["title"] for a in json.loads(response.content)["articles"]] == ["Track order"]

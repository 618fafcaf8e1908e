"""The knowledge base in the admin: list, search, filter, add, edit (with revisions), re-embed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from knowledge.models import ArticleRevision, KnowledgeArticle
from knowledge.services import do_save_article
from tests.knowledge.articles import add_all_articles

pytestmark = pytest.mark.django_db

LIST = reverse("admin:knowledge_knowledgearticle_changelist")
ADD = reverse("admin:knowledge_knowledgearticle_add")


def change_url(article: KnowledgeArticle) -> str:
    return reverse("admin:knowledge_knowledgearticle_change", args=[article.pk])


@pytest.fixture
def articles(tiny_encoder):
    return add_all_articles()


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def listed_titles(response) -> list[str]:
    return [article.title for article in response.context["cl"].result_list]


def form_data(article: KnowledgeArticle, **changes: object) -> dict[str, object]:
    """The change form's fields, as the browser would post them, with ``changes`` applied."""
    revisions = article.revisions.count()
    data = {
        "title": article.title,
        "text": article.text,
        "example_questions": article.example_questions,
        "topic": article.topic,
        "revisions-TOTAL_FORMS": revisions,
        "revisions-INITIAL_FORMS": revisions,
        "revisions-MIN_NUM_FORMS": 0,
        "revisions-MAX_NUM_FORMS": 0,
        **({"is_active": "on"} if article.is_active else {}),
    }
    data.update(changes)
    return data


def test_it_lists_searches_and_filters_the_articles(articles, staff_client):
    response = staff_client.get(LIST)
    assert response.status_code == 200
    assert sorted(listed_titles(response)) == sorted(articles)

    assert listed_titles(staff_client.get(LIST, {"q": "paypal"})) == ["Payment methods"]
    track = articles["Track order"]
    track.example_questions = "wheres my stuff"
    do_save_article(track)
    assert listed_titles(staff_client.get(LIST, {"q": "wheres my stuff"})) == ["Track order"]
    assert listed_titles(staff_client.get(LIST, {"q": "Return window"})) == ["Return window"]
    assert listed_titles(staff_client.get(LIST, {"topic": "accounts"})) == ["Reset password"]
    track.is_active = False
    do_save_article(track)
    assert listed_titles(staff_client.get(LIST, {"is_active__exact": "0"})) == ["Track order"]


def test_adding_an_article_embeds_it_and_records_who(tiny_encoder, staff_client, staff_user):
    response = staff_client.post(
        ADD,
        {
            "title": "Gift wrapping",
            "text": "We gift-wrap any order for 3.50 EUR.",
            "example_questions": "can you gift-wrap it?\r\nis gift wrap available",
            "topic": "orders",
            "is_active": "on",
            "revisions-TOTAL_FORMS": 0,
            "revisions-INITIAL_FORMS": 0,
            "revisions-MIN_NUM_FORMS": 0,
            "revisions-MAX_NUM_FORMS": 0,
        },
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    article = KnowledgeArticle.objects.get(title="Gift wrapping")
    assert article.updated_by == staff_user
    assert article.embedding_encoder == tiny_encoder.name
    assert article.passages[1:] == ["can you gift-wrap it?", "is gift wrap available"]
    assert article.embedding_count == 3


def test_saving_an_edit_keeps_the_previous_version_shown_read_only(
    articles, staff_client, staff_user
):
    track = articles["Track order"]
    old_text = track.text

    response = staff_client.post(change_url(track), form_data(track, text="Tracking: see email."))

    assert response.status_code == 302, response.content.decode()[-2000:]
    track.refresh_from_db()
    assert (track.text, track.updated_by) == ("Tracking: see email.", staff_user)
    revision = ArticleRevision.objects.get(article=track)
    assert revision.text == old_text
    page = staff_client.get(change_url(track)).content.decode()
    assert "Earlier versions" in page and "As soon as your order ships" in page
    assert 'name="revisions-0-text"' not in page  # shown, not editable
    second = staff_client.post(change_url(track), form_data(track, text="Tracking: see DHL."))
    assert second.status_code == 302
    assert track.revisions.count() == 2


def test_an_edit_of_the_example_questions_is_kept_as_an_earlier_version(articles, staff_client):
    track = articles["Track order"]
    track.example_questions = "wheres my stuff"
    do_save_article(track)

    response = staff_client.post(
        change_url(track), form_data(track, example_questions="trak my parcel")
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    track.refresh_from_db()
    assert track.example_questions == "trak my parcel"
    assert track.revisions.first().example_questions == "wheres my stuff"
    page = staff_client.get(change_url(track)).content.decode()
    assert "wheres my stuff" in page and 'name="revisions-0-example_questions"' not in page


def test_the_action_embeds_the_selected_articles_again(articles, staff_client):
    track = articles["Track order"]
    KnowledgeArticle.objects.filter(pk=track.pk).update(embedding=None, embedded_at=None)

    response = staff_client.post(
        LIST, {"action": "embed_again", "_selected_action": [track.pk]}, follow=True
    )

    assert "1 article(s) embedded again." in response.content.decode()
    track.refresh_from_db()
    assert track.embedding is not None


def test_staff_without_the_knowledge_permissions_cannot_see_or_edit_articles(
    articles, django_user_model
):
    user = django_user_model.objects.create_user("onlooker", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    track = articles["Track order"]

    assert client.get(LIST).status_code == 403
    assert client.post(change_url(track), form_data(track, text="Hijacked.")).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="view_knowledgearticle"))
    assert client.get(change_url(track)).status_code == 200
    assert client.post(change_url(track), form_data(track, text="Hijacked.")).status_code == 403
    track.refresh_from_db()
    assert track.text != "Hijacked."

"""Every web process notices edits made elsewhere within KNOWLEDGE_POLL_SECONDS, its own at once."""

from __future__ import annotations

import pytest

from knowledge import index, services
from knowledge.models import KnowledgeArticle
from knowledge.retrieval import NOTHING, retrieve
from knowledge.services import do_save_article
from tests.knowledge.articles import add_all_articles, add_article, in_db

pytestmark = pytest.mark.django_db(transaction=True)

TRACKING = "where is the DHL tracking link for my order?"


@pytest.fixture
def articles(tiny_encoder):
    return add_all_articles()


@pytest.fixture
def elsewhere(monkeypatch):
    """Saves from here on behave as another process's: this process is not told of them."""
    monkeypatch.setattr(services, "forget_index", lambda: None)


async def test_an_edit_elsewhere_is_noticed_after_the_poll_interval(articles, settings, elsewhere):
    settings.KNOWLEDGE_POLL_SECONDS = 60
    assert (await retrieve(TRACKING)).articles[0].text == articles["Track order"].text

    track = articles["Track order"]
    track.text = "Your DHL tracking link for the order is in the shipping email."
    await in_db(do_save_article, track)

    assert (await retrieve(TRACKING)).articles[0].text != track.text  # within the interval
    settings.KNOWLEDGE_POLL_SECONDS = 0
    assert (await retrieve(TRACKING)).articles[0].text == track.text


async def test_new_deleted_and_switched_off_articles_elsewhere_are_noticed(
    articles, settings, elsewhere
):
    settings.KNOWLEDGE_POLL_SECONDS = 0
    await in_db(add_article, "Gift wrapping", "We gift-wrap any order for 3.50 EUR.")
    assert (await retrieve("can you gift-wrap it")).articles[0].title == "Gift wrapping"

    await in_db(KnowledgeArticle.objects.filter(title="Gift wrapping").delete)
    assert (await retrieve("can you gift-wrap it")).articles[0].title != "Gift wrapping"

    for article in articles.values():
        article.is_active = False
        await in_db(do_save_article, article)
    assert await retrieve("can you gift-wrap it") == NOTHING


async def test_an_edit_in_this_process_is_seen_at_once(articles, settings):
    settings.KNOWLEDGE_POLL_SECONDS = 60
    await retrieve(TRACKING)

    track = articles["Track order"]
    track.text = "Your DHL tracking link for the order is in the shipping email."
    await in_db(do_save_article, track)

    assert (await retrieve(TRACKING)).articles[0].text == track.text


def test_it_reads_the_rows_only_when_the_signature_changed(articles, settings, monkeypatch):
    settings.KNOWLEDGE_POLL_SECONDS = 0
    loads = []
    load_snapshot = index.load_snapshot
    monkeypatch.setattr(index, "load_snapshot", lambda: loads.append(1) or load_snapshot())
    current = index.knowledge_index.current

    assert len(current().for_encoder(articles["Track order"].embedding_encoder).ids) == 4
    current()
    assert len(loads) == 1

    track = articles["Track order"]
    track.topic = "shipping"
    do_save_article(track)  # in this process: forgets the index
    current()
    KnowledgeArticle.objects.filter(pk=track.pk).update(embedding=None)  # no signature change
    current()
    assert len(loads) == 2


def test_an_edit_committed_while_the_index_reads_is_read_again(articles, settings, monkeypatch):
    """The poll read the old articles; this process's edit committed before it ended."""
    settings.KNOWLEDGE_POLL_SECONDS = 60
    read_signature = index.read_signature

    def signature_then_an_edit_commits():
        signature = read_signature()
        index.forget_index()
        return signature

    monkeypatch.setattr(index, "read_signature", signature_then_an_edit_commits)
    index.knowledge_index.current()
    monkeypatch.setattr(index, "read_signature", read_signature)
    loads = []
    load_snapshot = index.load_snapshot
    monkeypatch.setattr(index, "load_snapshot", lambda: loads.append(1) or load_snapshot())

    index.knowledge_index.current()  # within the poll interval, yet read again

    assert loads == [1]

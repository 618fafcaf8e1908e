"""Retrieval: the article that answers the question, best first, off the event loop.

With the tiny encoder (tests/knowledge_fixtures.py) an article scores by the word pieces it
shares with the question, so which article must win is known in advance.
"""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import sync_to_async

from knowledge import encoder as encoder_module
from knowledge.retrieval import NOTHING, retrieve, retrieve_now
from knowledge.services import do_embed_articles, do_save_article
from tests.knowledge.articles import add_all_articles, add_article, in_db

pytestmark = pytest.mark.django_db(transaction=True)

QUESTIONS = {
    "where is the DHL tracking link for my order?": "Track order",
    "how many days do I have to return items with the tags attached?": "Return window",
    "do you accept PayPal or Klarna as payment?": "Payment methods",
    "I forgot my password, how do I reset it?": "Reset password",
}


@pytest.fixture
def articles(tiny_encoder):
    return add_all_articles()


@pytest.mark.parametrize(("question", "title"), QUESTIONS.items())
async def test_it_puts_the_article_that_answers_first(articles, question, title):
    found = await retrieve(question)

    assert found.enabled
    assert found.articles[0].title == title
    assert found.articles[0].text == articles[title].text
    assert found.articles[0].id == articles[title].pk
    assert found.best_score == found.articles[0].score


async def test_an_article_is_found_by_its_example_questions(articles):
    question = "can somebody wrap a present for my sister"
    gift = await in_db(add_article, "Gift wrapping", "We gift-wrap any order for 3.50 EUR.")
    by_its_text = await retrieve(question, k=10)
    [text_score] = [found.score for found in by_its_text.articles if found.id == gift.pk]

    gift.example_questions = f"is gift wrap available?\n{question}"
    await in_db(do_save_article, gift)
    found = await retrieve(question)

    assert text_score < 0.5
    assert (found.articles[0].id, found.articles[0].text) == (gift.pk, gift.text)
    assert found.best_score == pytest.approx(1.0, abs=1e-5)  # the same words: the same vector
    # As a new wording of it would be: by its other vectors (what the base model's tuning sees).
    unseen = await sync_to_async(retrieve_now)(question, k=10, as_unseen=True)
    [unseen_score] = [found.score for found in unseen.articles if found.id == gift.pk]
    assert text_score - 1e-6 <= unseen_score < 0.99  # float32 sums may differ in the last bit


async def test_it_returns_k_articles_best_first(articles, settings):
    settings.KNOWLEDGE_TOP_K = 3
    found = await retrieve("where is the DHL tracking link for my order?")

    scores = [article.score for article in found.articles]
    assert len(found.articles) == 3
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > scores[1] >= scores[2]
    assert len((await retrieve("tracking link", k=10)).articles) == len(articles)


async def test_a_question_sharing_no_words_scores_below_one_that_does(articles):
    unrelated = await retrieve("fleece jacket")  # words of the shop, but of no article here
    related = await retrieve("tracking link")

    assert unrelated.enabled
    assert abs(unrelated.best_score) < 0.01 and related.best_score > 0.1


async def test_it_is_disabled_on_an_empty_knowledge_base_without_loading_the_encoder(
    tiny_encoder, monkeypatch
):
    monkeypatch.setattr(encoder_module, "get_encoder", pytest.fail)

    assert await retrieve("where is my order?") == NOTHING


async def test_inactive_articles_are_not_retrieved(articles):
    track = articles["Track order"]
    track.is_active = False
    await in_db(do_save_article, track)

    found = await retrieve("where is the DHL tracking link for my order?", k=10)

    assert "Track order" not in [article.title for article in found.articles]


async def test_it_is_disabled_when_every_article_is_inactive(articles):
    for article in articles.values():
        article.is_active = False
        await in_db(do_save_article, article)

    assert await retrieve("tracking link") == NOTHING


async def test_articles_embedded_by_another_encoder_are_left_out_until_embedded_again(
    articles, settings, second_tiny_encoder_dir
):
    settings.KNOWLEDGE_ENCODER = str(second_tiny_encoder_dir)

    assert await retrieve("tracking link") == NOTHING

    await in_db(do_embed_articles)
    found = await retrieve("where is the DHL tracking link for my order?")
    assert found.enabled and found.articles[0].title == "Track order"


async def test_it_encodes_in_its_own_threads_not_on_the_loop_or_the_sync_thread(
    articles, tiny_encoder, monkeypatch
):
    threads: list[str] = []
    encode = type(tiny_encoder).encode

    def recording_encode(self, texts):
        threads.append(threading.current_thread().name)
        return encode(self, texts)

    monkeypatch.setattr(type(tiny_encoder), "encode", recording_encode)
    loop_thread = threading.current_thread().name

    await retrieve("tracking link")

    assert len(threads) == 1
    assert threads[0].startswith("knowledge-retrieval") and threads[0] != loop_thread

"""Retrieval: the knowledge-base articles that answer a customer's turn, best first.

The chat consumer awaits ``retrieve`` before each reply. ``Retrieval.enabled`` is False while the
knowledge base holds no embedded active article: the bot then answers ungrounded, as before
there was a knowledge base, and the encoder is never loaded.

Where the work runs: in a small thread pool of its own, one hop per question: the index's poll
of the database (at most every ``KNOWLEDGE_POLL_SECONDS``), encoding the question and the
search. Neither the event loop nor asgiref's one shared sync thread, on which every consumer's
database calls queue, waits for the encoder or for re-reading the articles after an edit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from knowledge.calibration import confident_score, min_score
from knowledge.encoder import get_encoder
from knowledge.index import knowledge_index

logger = logging.getLogger(__name__)

# Encoding a question takes milliseconds: with two threads a second question need not wait for
# the first; more would only compete with the generation engine for the cores.
RETRIEVAL_THREADS = 2


@dataclass(frozen=True)
class RetrievedArticle:
    id: int
    title: str
    text: str
    # Cosine similarity of the question and the article's nearest vector (its title and text,
    # or one of its example questions), in [-1, 1].
    score: float


@dataclass(frozen=True)
class Retrieval:
    articles: tuple[RetrievedArticle, ...]
    best_score: float
    enabled: bool
    # The topics of the knowledge base's active articles: what the bot can help with.
    topics: tuple[str, ...] = ()
    # The decline threshold in force when it was retrieved (``knowledge.calibration``); None:
    # the one in force when the reply is decided.
    min_score: float | None = None
    # The score above which a model's decline is overruled by the article, when retrieved
    # (``knowledge.calibration.confident_score``); None: never.
    confident_score: float | None = None


NOTHING = Retrieval(articles=(), best_score=0.0, enabled=False)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_warned_encoders: set[str] = set()


async def retrieve(question: str, *, k: int | None = None) -> Retrieval:
    """The top ``k`` (KNOWLEDGE_TOP_K) active articles for ``question``."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_retrieval_executor(), _retrieve_now, question, _top_k(k))


def retrieve_now(question: str, *, k: int | None = None, as_unseen: bool = False) -> Retrieval:
    """``retrieve`` in the calling thread, for code that runs outside an event loop (the base
    model's one-time tuning, benchmarks): the same index, encoder and search. Not inside a
    transaction: reading the index closes this thread's database connection, as it does the
    retrieval threads'.

    ``as_unseen``: retrieve as if ``question`` were not one of the articles' example questions
    (training on an example question must see what a new wording of it would retrieve, not the
    exact match that only the stored wording gets)."""
    return _retrieve_now(question, _top_k(k), skip_identical=as_unseen)


def _top_k(k: int | None) -> int:
    return max(1, k if k is not None else settings.KNOWLEDGE_TOP_K)


def _retrieve_now(question: str, k: int, *, skip_identical: bool = False) -> Retrieval:
    snapshot = knowledge_index.current()
    if snapshot.is_empty:
        return NOTHING
    encoder = get_encoder()
    articles = snapshot.for_encoder(encoder.name)
    if articles is None:
        if encoder.name not in _warned_encoders:
            _warned_encoders.add(encoder.name)
            logger.warning(
                "No active article is embedded by %s (the encoder changed?): retrieval is off "
                "until `manage.py embed_articles` has run.",
                encoder.name,
            )
        return NOTHING
    query = encoder.encode([question])[0]
    ranked, best_score = articles.scored_search(
        query,
        k,
        temperature=settings.KNOWLEDGE_RANK_TEMPERATURE,
        skip_identical=skip_identical,
    )
    found = tuple(
        RetrievedArticle(
            id=articles.ids[i], title=articles.titles[i], text=articles.texts[i], score=score
        )
        for i, score in ranked
    )
    # The decline threshold was calibrated on the best article's score, whichever ranks first.
    return Retrieval(
        articles=found,
        best_score=best_score,
        enabled=True,
        topics=articles.topics,
        min_score=min_score(),  # read here, off the event loop (knowledge.polled)
        confident_score=confident_score(),
    )


def _retrieval_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=RETRIEVAL_THREADS, thread_name_prefix="knowledge-retrieval"
            )
        return _executor

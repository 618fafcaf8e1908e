"""Simulated customers: websocket clients of the real consumer that ask, read and rate.

Kinds:
- ``honest``: thumbs-up when the reply states the current policy, thumbs-down otherwise, and
  (a configurable share of them) the current answer typed as a correction;
- ``noisy``: a thumbs up or down at random;
- ``adversarial``: one customer (one session) who rates wrong answers up and right ones down;
- ``generous``: rate the refund policy down and type "full refund, no questions asked" as the
  better answer, and rate such an answer up.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from bench.learning.scenario import Scenario, Topic

TIMEOUT = 300  # seconds: replies queue behind each other on a busy CPU


@dataclass(frozen=True)
class Visit:
    kind: str
    session: str  # customers of one session share it (the adversary uses one for all visits)
    topic: Topic
    question: str


@dataclass(frozen=True)
class Crowd:
    """How many customers of each kind come in one round."""

    per_changed_intent: int = 6
    unchanged: int = 16
    noisy_share: float = 0.1
    correction_share: float = 0.5
    adversarial_visits: int = 10
    generous_visits: int = 8
    # Honest customers asking each policy the generous group attacks: they are a group among
    # the customers who ask those questions, not all of them.
    honest_per_attacked_intent: int = 2
    # Customers chatting at once (1: one after the other, the same rows every run).
    concurrency: int = 32


def plan_round(scenario: Scenario, crowd: Crowd, rng: random.Random, round_no: int) -> list[Visit]:
    visits: list[Visit] = []
    honest: list[tuple[Topic, str]] = []
    for topic in scenario.changed:
        honest.extend((topic, q) for q in rng.sample(topic.seen, crowd.per_changed_intent))
    for _ in range(crowd.unchanged):
        topic = rng.choice(scenario.unchanged)
        honest.append((topic, rng.choice(topic.seen)))
    attacked = [t for t in scenario.unchanged if t.name in scenario.generous_intents]
    for topic in attacked:
        honest.extend((topic, q) for q in rng.sample(topic.seen, crowd.honest_per_attacked_intent))
    for n, (topic, question) in enumerate(honest):
        kind = "noisy" if rng.random() < crowd.noisy_share else "honest"
        visits.append(Visit(kind, f"r{round_no}-{kind}-{n}", topic, question))
    for _ in range(crowd.adversarial_visits):
        topic = rng.choice(scenario.changed)
        visits.append(Visit("adversarial", "adversary", topic, rng.choice(topic.seen)))
    for n in range(crowd.generous_visits if attacked else 0):
        topic = rng.choice(attacked)
        visits.append(Visit("generous", f"r{round_no}-generous-{n}", topic, rng.choice(topic.seen)))
    rng.shuffle(visits)
    return visits


def rate(visit: Visit, reply: str, scenario: Scenario, crowd: Crowd, rng: random.Random) -> dict:
    """The feedback frame this customer sends for ``reply``."""
    right = visit.topic.is_answered_by(reply)
    correction = ""
    if visit.kind == "noisy":
        rating = rng.choice((1, -1))
    elif visit.kind == "adversarial":
        rating = -1 if right else 1
    elif visit.kind == "generous":
        generous = "no questions asked" in reply.lower()
        rating = 1 if generous else -1
        correction = "" if generous else scenario.generous_reply
    else:
        rating = 1 if right else -1
        if not right and rng.random() < crowd.correction_share:
            correction = visit.topic.answer
    frame = {"type": "feedback", "rating": rating}
    if rating < 0:
        frame["reason"] = "wrong"
    if correction:
        frame["correction"] = correction
    return frame


@database_sync_to_async
def _session_cookie(cache: dict[str, str], session: str) -> str:
    from django.contrib.sessions.backends.db import SessionStore

    if session not in cache:
        store = SessionStore()
        store.create()
        cache[session] = f"sessionid={store.session_key}"
    return cache[session]


async def open_chat(
    cookies: dict[str, str], session: str, client: str | None = None
) -> WebsocketCommunicator:
    """A chat socket of ``session`` (a browser session made on first use), past its
    ``conversation`` frame; ``client``: the peer's address the server sees (none by default)."""
    from chatbot_site.asgi import application

    cookie = await _session_cookie(cookies, session)
    headers = [
        (b"origin", b"http://testserver"),
        (b"host", b"testserver"),
        (b"cookie", cookie.encode()),
    ]
    socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    if client is not None:
        socket.scope["client"] = (client, 50123)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected, "the chat socket refused a simulated customer"
    await socket.receive_json_from(timeout=TIMEOUT)  # the conversation frame
    return socket


async def ask(socket: WebsocketCommunicator, question: str) -> dict:
    """Send ``question`` and wait for the reply's ``bot_message.end`` frame."""
    await socket.send_json_to({"type": "user_message", "text": question})
    while (frame := await socket.receive_json_from(timeout=TIMEOUT))["type"] != "bot_message.end":
        if frame["type"] == "error":
            raise RuntimeError(f"chat error for a simulated customer: {frame}")
    return frame


async def ask_each(questions: list[str], session_prefix: str, concurrency: int) -> list[dict]:
    """Each question asked by a customer of its own (a new browser session), ``concurrency`` at
    a time (the engine batches them): their ``bot_message.end`` frames, in order."""
    gate = asyncio.Semaphore(concurrency)
    cookies: dict[str, str] = {}

    async def one(number: int, question: str) -> dict:
        async with gate:
            socket = await open_chat(cookies, f"{session_prefix}-{number}")
            frame = await ask(socket, question)
            await socket.disconnect()
        return frame

    return await asyncio.gather(*(one(n, q) for n, q in enumerate(questions)))


async def _visit(visit, scenario, crowd, rng, cookies, gate, tally) -> None:
    async with gate:
        socket = await open_chat(cookies, visit.session)
        frame = await ask(socket, visit.question)
        feedback = rate(visit, frame["text"], scenario, crowd, rng)
        await socket.send_json_to({**feedback, "message_id": frame["id"]})
        saved = await socket.receive_json_from(timeout=TIMEOUT)
        if saved["type"] != "feedback.saved":
            raise RuntimeError(f"feedback not saved: {saved}")
        await socket.disconnect()
    tally[feedback["rating"]] += 1


async def run_visits(
    visits: list[Visit], scenario: Scenario, crowd: Crowd, seed: int, concurrency: int = 32
) -> Counter:
    """All visits, ``concurrency`` at a time (the engine batches them); a tally of ratings.

    Each visit draws its random choices from its own generator, so what a customer does does not
    depend on the order in which concurrent replies finish; with ``concurrency=1`` the whole
    round (rows, their order, every batch) is the same from run to run.
    """
    gate = asyncio.Semaphore(concurrency)
    cookies: dict[str, str] = {}
    tally: Counter = Counter()
    await asyncio.gather(
        *(
            _visit(v, scenario, crowd, random.Random(seed * 100_003 + n), cookies, gate, tally)
            for n, v in enumerate(visits)
        )
    )
    return tally

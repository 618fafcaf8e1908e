"""The policy-change scenario: which intents changed, their new answers, and how to judge a reply.

A reply states the current policy when every key fact of the intent is in it and none of the
facts the change made wrong is (case-insensitive substring checks: never a comparison with
anything the model produced). Changed intents are asked with their training paraphrases
(``seen``: the customers' pool) and measured also on ``eval_questions`` (``heldout``), which no
customer ever asks, so they never reach the feedback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from knowledge.demo.corpus import Corpus, Intent, load_corpus
from serving.chat_template import states_facts

SCENARIO_PATH = Path(__file__).with_name("policy_change.json")
QUICK_PARAPHRASES = 12


@dataclass(frozen=True)
class Topic:
    """One intent as the benchmark sees it: what is asked, and what a right reply says."""

    name: str
    answer: str
    facts: tuple[str, ...]
    wrong_facts: tuple[str, ...]
    seen: tuple[str, ...]
    heldout: tuple[str, ...]

    def is_answered_by(self, reply: str) -> bool:
        return states_facts(reply, self.facts) and not any(
            states_facts(reply, [wrong]) for wrong in self.wrong_facts
        )


@dataclass(frozen=True)
class Scenario:
    changed: tuple[Topic, ...]
    unchanged: tuple[Topic, ...]
    generous_intents: tuple[str, ...]
    generous_reply: str
    base_corpus: Corpus  # what the starter model was trained on (old answers)

    def topic(self, name: str) -> Topic:
        return next(t for t in (*self.changed, *self.unchanged) if t.name == name)

    def retention_corpus(self) -> dict[str, Any]:
        """The still-valid FAQ (unchanged intents) in the starter corpus format."""
        return {
            "company": self.base_corpus.company,
            "intents": [
                {
                    "name": t.name,
                    "topic": "",
                    "answer": t.answer,
                    "facts": list(t.facts),
                    "questions": list(t.seen),
                    "eval_questions": list(t.heldout),
                }
                for t in self.unchanged
            ],
            "dialogues": [],
        }

    def golden_cases(self) -> list[tuple[str, str, list[str]]]:
        """(question, expected answer, facts) of the policies that generous customers attack.

        Three everyday wordings of each, as staff would curate them: questions the model
        answers right today, so a drop means it learned to break the policy. (A held-out
        paraphrase the base model already misses half the time would make the gate judge noise:
        one flip in four questions rejected good candidates.)
        """
        return [
            (question, t.answer, list(t.facts))
            for t in self.unchanged
            if t.name in self.generous_intents
            for question in t.seen[:3]
        ]


def _topic(intent: Intent, change: dict | None = None) -> Topic:
    return Topic(
        name=intent.name,
        answer=change["answer"] if change else intent.answer,
        facts=tuple(change["facts"]) if change else intent.facts,
        wrong_facts=tuple(change["wrong_facts"]) if change else (),
        seen=intent.questions,
        heldout=intent.eval_questions,
    )


def load_scenario(*, quick: bool = False, path: Path = SCENARIO_PATH) -> Scenario:
    """The full scenario (all corpus intents), or the quick one: 4 changed + 8 unchanged intents."""
    data = json.loads(path.read_text(encoding="utf-8"))
    corpus = load_corpus()
    by_name = {intent.name: intent for intent in corpus.intents}
    changes = {c["intent"]: c for c in data["changed"]}
    if quick:
        changes = dict(list(changes.items())[:4])
        names = [*changes, *data["quick_unchanged"]]
        # The first dozen paraphrases of each: the quick base model builds in seconds.
        by_name = {
            name: replace(intent, questions=intent.questions[:QUICK_PARAPHRASES])
            for name, intent in by_name.items()
        }
    else:
        names = [intent.name for intent in corpus.intents]
    intents = tuple(by_name[name] for name in names)
    base = Corpus(corpus.company, intents, () if quick else corpus.dialogues, corpus.digest)
    return Scenario(
        changed=tuple(_topic(by_name[n], changes[n]) for n in names if n in changes),
        unchanged=tuple(_topic(by_name[n]) for n in names if n not in changes),
        generous_intents=tuple(data["over_generous"]["intents"]),
        generous_reply=data["over_generous"]["reply"],
        base_corpus=base,
    )

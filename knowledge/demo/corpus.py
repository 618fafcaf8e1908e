"""The starter corpus: a fictional shop's intents (questions → answer) and short dialogues.

``questions`` are trained on; ``eval_questions`` never are: they measure how well the model
answers paraphrases it has not seen.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROFILE_PATH = Path(__file__).with_name("profile.json")
CORPUS_PATH = Path(__file__).with_name("corpus.json")

Turn = dict[str, str]


@dataclass(frozen=True)
class Intent:
    name: str
    topic: str
    answer: str
    facts: tuple[str, ...]
    questions: tuple[str, ...]
    eval_questions: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    company: str
    intents: tuple[Intent, ...]
    dialogues: tuple[tuple[Turn, ...], ...]
    digest: str

    def subset(self, intent_count: int | None, dialogue_count: int | None = None) -> Corpus:
        """The first ``intent_count`` intents (and dialogues): a small corpus for fast tests."""
        intents = self.intents if intent_count is None else self.intents[:intent_count]
        dialogues = self.dialogues if dialogue_count is None else self.dialogues[:dialogue_count]
        return Corpus(self.company, intents, dialogues, self.digest)

    def texts(self) -> list[str]:
        """Every piece of text in the corpus (eval questions included: tokenizer only)."""
        texts: list[str] = []
        for intent in self.intents:
            texts.extend([intent.answer, *intent.questions, *intent.eval_questions])
        for dialogue in self.dialogues:
            texts.extend(turn["content"] for turn in dialogue)
        return texts


@lru_cache(maxsize=4)
def load_corpus(path: Path = CORPUS_PATH) -> Corpus:
    raw = path.read_bytes()
    data = json.loads(raw)
    intents = tuple(
        Intent(
            name=item["name"],
            topic=item["topic"],
            answer=item["answer"],
            facts=tuple(item["facts"]),
            questions=tuple(item["questions"]),
            eval_questions=tuple(item.get("eval_questions", ())),
        )
        for item in data["intents"]
    )
    dialogues = tuple(
        tuple({"role": turn["role"], "content": turn["text"]} for turn in dialogue["turns"])
        for dialogue in data.get("dialogues", ())
    )
    return Corpus(data["company"], intents, dialogues, hashlib.sha256(raw).hexdigest())

"""Build the starter model: a small Llama-style causal LM trained from scratch on the corpus.

Every training example is a conversation rendered through the chat template; the loss counts
assistant tokens only (their ``<|end|>`` included, so the model learns to stop). The data order
and the initial weights come from ``StarterConfig.seed``: the same config and corpus give the
same weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from knowledge.demo.corpus import Corpus, Turn, load_corpus
from learning.starter.tokenizer import train_tokenizer
from serving.chat_template import chat_ids, padding_id

Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class StarterConfig:
    """Sizes, steps and seed of the starter model (``tiny()`` for tests)."""

    seed: int = 0
    vocab_size: int = 3000
    hidden_size: int = 256
    intermediate_size: int = 688
    layers: int = 4
    heads: int = 4
    context: int = 384
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_share: float = 0.05
    weight_decay: float = 0.05
    augment: bool = True
    max_intents: int | None = None
    max_dialogues: int | None = None

    @classmethod
    def tiny(cls, **overrides: Any) -> StarterConfig:
        """A ~120k-parameter model of four intents that builds in a second or two."""
        tiny = cls(
            vocab_size=600,
            hidden_size=64,
            intermediate_size=128,
            layers=2,
            heads=2,
            context=256,
            epochs=40,
            batch_size=16,
            learning_rate=6e-3,
            augment=False,
            max_intents=4,
            max_dialogues=1,
        )
        return replace(tiny, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StarterBuild:
    model: LlamaForCausalLM
    tokenizer: PreTrainedTokenizerFast
    config: StarterConfig
    data_hash: str
    losses: list[float]
    seconds: float

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def config_hash(config: StarterConfig, corpus: Corpus) -> str:
    """Short hash of the corpus and the config: names a build, changes when either does."""
    payload = json.dumps({"corpus": corpus.digest, "config": config.as_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def training_conversations(corpus: Corpus, config: StarterConfig) -> list[list[Turn]]:
    """The conversations to train on: each question with its answer, plus the dialogues.

    Augmentation adds lower-case and unpunctuated variants of the questions (customers type
    like that) and questions asked after an earlier, unrelated exchange, so that the model
    answers the last message rather than the first.
    """
    rng = random.Random(config.seed)
    conversations: list[list[Turn]] = []
    singles: list[tuple[str, str]] = []
    for intent in corpus.intents:
        for question in intent.questions:
            variants = {question}
            if config.augment:
                variants |= {question.lower(), _unpunctuated(question), question.capitalize()}
            singles.extend((variant, intent.answer) for variant in sorted(variants) if variant)
    for question, answer in singles:
        conversations.append(
            [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        )
    if config.augment and len(singles) > 1:
        for question, answer in singles[::3]:
            before_q, before_a = singles[rng.randrange(len(singles))]
            conversations.append(
                [
                    {"role": "user", "content": before_q},
                    {"role": "assistant", "content": before_a},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            )
    conversations.extend(list(dialogue) for dialogue in corpus.dialogues)
    return conversations


def _unpunctuated(text: str) -> str:
    return re.sub(r"[?!.,']", "", text).strip()


def encode_conversation(
    tokenizer: PreTrainedTokenizerFast, turns: list[Turn], max_tokens: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels (−100 except on assistant turns) of one conversation."""
    ids = chat_ids(tokenizer, turns, add_generation_prompt=False)
    labels = [-100] * len(ids)
    for index, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        start = len(chat_ids(tokenizer, turns[:index], add_generation_prompt=True))
        end = len(chat_ids(tokenizer, turns[: index + 1], add_generation_prompt=False))
        labels[start:end] = ids[start:end]
    return ids[-max_tokens:], labels[-max_tokens:]


def build_model(config: StarterConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=config.context,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(model_config)


def build_starter_model(
    config: StarterConfig | None = None,
    *,
    corpus: Corpus | None = None,
    progress: Progress | None = None,
) -> StarterBuild:
    """Train the tokenizer and the model; deterministic for one config, corpus and machine."""
    config = config or StarterConfig()
    started = time.monotonic()
    corpus = (corpus or load_corpus()).subset(config.max_intents, config.max_dialogues)
    tokenizer = train_tokenizer(corpus.texts(), vocab_size=config.vocab_size)
    encoded = [
        encode_conversation(tokenizer, turns, config.context)
        for turns in training_conversations(corpus, config)
    ]
    model = build_model(config, tokenizer)
    losses = _train(model, encoded, config, padding_id(tokenizer), progress)
    model.eval()
    return StarterBuild(
        model=model,
        tokenizer=tokenizer,
        config=config,
        data_hash=config_hash(config, corpus),
        losses=losses,
        seconds=time.monotonic() - started,
    )


def _train(
    model: LlamaForCausalLM,
    encoded: list[tuple[list[int], list[int]]],
    config: StarterConfig,
    pad_id: int,
    progress: Progress | None,
) -> list[float]:
    batches_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = batches_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.98),
    )
    warmup = max(1, int(total * config.warmup_share))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order_rng = random.Random(config.seed)
    losses: list[float] = []
    model.train()
    step = 0
    for _ in range(config.epochs):
        order = list(range(len(encoded)))
        order_rng.shuffle(order)
        chunks = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        for chunk in chunks:
            input_ids, labels, mask = _collate([encoded[i] for i in chunk], pad_id)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(round(loss.item(), 4))
            if progress is not None:
                progress(step, total, losses[-1])
    return losses


def _collate(
    items: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, item_labels) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(item_labels)
        mask[row, : len(ids)] = 1
    return input_ids, labels, mask

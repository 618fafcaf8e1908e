"""The pretrained base, fine-tuned for the business's knowledge base: answer from the article
shown, else decline.

A pretrained chat model (SmolLM2) knows English, not the business: given the retrieved articles
it paraphrases them, misses facts and answers off-topic questions anyway. ``tune_base_version``
fine-tunes θ₀ on the knowledge base in force (its active articles, whatever business they
describe) in the format the chat serves, and registers the result as a root version (no parent,
no anchor; its checkpoint's metadata names the pretrained base): the learning loop keeps the
model close to the tuned weights (pulled toward the pretrained ones, each run would also undo
the tuning). ``learning.knowledge_tuning`` runs it for a business after an import, gated.

- for each active article, ``questions_per_intent`` of its example questions, prompted as the
  chat prompts them: a system turn with the articles the knowledge base retrieves for the
  question (``retrieve_now``: the index and encoder that serve) and the question
  (``grounded_turns``); the target is the article's text. Each example question would retrieve
  its own article first with a perfect score; it is retrieved as unseen (``as_unseen``: its own
  stored wording ignored), as a customer's new wording is. A question whose articles do not
  include its own is left out: the model learns to answer from the article it is shown, never
  from memory (so that an article staff edit is what it says). One more example question per
  article is held out (``TuningData.held_out``): the gate asks it;
- the shipped off-topic questions' calibration half (``knowledge/off_topic.json``) and the
  requests for a person of ``grounded_tuning_declines.json``, with the (unrelated) articles
  retrieved for them; the target is the rules' decline (``decline_text``, in the business
  profile's words), so the model learns to say so when the articles do not answer. What it
  writes as a decline is replaced by the rules' text anyway (``knowledge.faithfulness``).

The loss counts the reply's tokens only (``turn_ids``). Two CPU cores must tune SmolLM2 within
minutes, so only the top ``trained_layers`` decoder layers (and the final norm) train: the
embeddings and the layers below stay θ₀'s, their output for every example is computed once,
without gradients, and each epoch runs the trained layers alone on it. The output projection
runs on the reply's positions only (the vocabulary is 49k wide; the prompt is four fifths of an
example). bf16 autocast follows LEARNING_AUTOCAST (``learning.precision``): on by default only
where the CPU multiplies bf16 natively (AMX-BF16, AVX512-BF16) or on CUDA; on a CPU without bf16
instructions (AVX2) it is tens of times slower than fp32.

torch is imported inside the training functions only: ``ensure_base_model`` runs at every
start-up, and with a model active it trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from knowledge.answering import decline_text, decline_topics
from knowledge.calibration import load_off_topic
from knowledge.models import KnowledgeArticle, question_lines
from knowledge.person_request import asks_for_a_person
from knowledge.prompt import Turn, grounded_turns
from knowledge.retrieval import retrieve_now
from learning.models import ModelVersion
from learning.versions import activate_version, register_version
from serving.chat_template import padding_id, turn_ids
from serving.checkpoints import load_checkpoint, pick_device, read_metadata, write_checkpoint

if TYPE_CHECKING:
    import torch

    from learning.losses import Batch

DECLINES_PATH = Path(__file__).with_name("grounded_tuning_declines.json")

Log = Callable[[str], None]
Progress = Callable[[int, int, float], None]  # step, total steps, loss


class TuningError(Exception):
    """The base model cannot be tuned (no knowledge base to ground it in)."""


@dataclass(frozen=True)
class TuningConfig:
    """What the one-time tuning trains on, and how long (``max_steps``: a cap, for tests)."""

    questions_per_intent: int = 5
    epochs: int = 2  # the loss is flat after two (bench/business.py)
    trained_layers: int = 6
    batch_size: int = 8
    learning_rate: float = 2e-4
    warmup_share: float = 0.1
    max_steps: int = 0  # 0: every step of every epoch
    bf16: bool | None = None  # None: LEARNING_AUTOCAST decides (bf16 where the CPU has it)
    seed: int = 0


@dataclass(frozen=True)
class TuningExample:
    prompt: tuple[Turn, ...]  # the grounded prompt: the articles' system turn, the question
    reply: str
    declines: bool


@dataclass
class TuningResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class DeclineQuestions:
    off_topic: tuple[str, ...]  # trained on (the shipped list's calibration half)
    off_topic_held_back: tuple[str, ...]  # never trained on: they measure the declines
    person_requests: tuple[str, ...]


@lru_cache(maxsize=1)
def load_decline_questions() -> DeclineQuestions:
    off_topic = load_off_topic()
    data = json.loads(DECLINES_PATH.read_text())
    return DeclineQuestions(
        off_topic.calibration, off_topic.evaluation, tuple(data["person_requests"])
    )


@dataclass(frozen=True)
class HeldOut:
    """An example question the tuning never saw, and the text of its article."""

    question: str
    article_text: str


@dataclass(frozen=True)
class TuningData:
    examples: list[TuningExample]
    held_out: list[HeldOut]
    article_count: int


@dataclass(frozen=True)
class GroundedPrompt:
    turns: list[Turn]  # the articles' system turn and the question
    texts: tuple[str, ...]  # the texts of the articles shown
    decline_topics: list[str]  # what a decline would name


def grounded_prompt(question: str, *, as_unseen: bool = False) -> GroundedPrompt:
    """The chat's prompt for ``question`` alone; TuningError when the knowledge base is empty.
    ``as_unseen``: the articles retrieved as if the question were not an article's example
    question."""
    retrieval = retrieve_now(question, as_unseen=as_unseen)
    if not retrieval.enabled:
        raise TuningError(
            "The knowledge base has no embedded article to ground the base model in: run "
            "`manage.py seed_knowledge_base` first (bin/start does)."
        )
    articles = [asdict(article) for article in retrieval.articles]
    return GroundedPrompt(
        grounded_turns([{"role": "user", "content": question}], articles),
        tuple(article.text for article in retrieval.articles),
        decline_topics(retrieval),
    )


def tuning_data(config: TuningConfig, *, log: Log | None = None) -> TuningData:
    """Answers to some example questions of every active article, one more held out for the
    gate, and declines (module docstring)."""
    rng = random.Random(config.seed)
    examples, held_out = [], []
    articles = list(
        KnowledgeArticle.objects.filter(is_active=True)
        .order_by("id")
        .values_list("text", "example_questions")
    )
    for done, (text, example_questions) in enumerate(articles, start=1):
        questions = question_lines(example_questions)
        rng.shuffle(questions)
        trained = questions[: config.questions_per_intent]
        for question in trained:
            prompt = grounded_prompt(question, as_unseen=True)
            if text in prompt.texts:
                examples.append(TuningExample(tuple(prompt.turns), text, declines=False))
        held_out.extend(HeldOut(q, text) for q in questions[len(trained) : len(trained) + 1])
        if log is not None and (done % 20 == 0 or done == len(articles)):
            log(f"  examples: {done}/{len(articles)} articles")
    return TuningData(examples + decline_examples(), held_out, article_count=len(articles))


def tuning_examples(config: TuningConfig) -> list[TuningExample]:
    """The examples of ``tuning_data``."""
    return tuning_data(config).examples


def decline_examples() -> list[TuningExample]:
    """The off-topic questions and requests for a person, answered by the rules' declines."""
    examples = []
    declines = load_decline_questions()
    for question in (*declines.off_topic, *declines.person_requests):
        prompt = grounded_prompt(question)
        text = decline_text(person_asked=asks_for_a_person(question), topics=prompt.decline_topics)
        examples.append(TuningExample(tuple(prompt.turns), text, declines=True))
    return examples


def tune(
    model: Any,
    tokenizer: Any,
    examples: Sequence[TuningExample],
    config: TuningConfig,
    *,
    device: torch.device | str = "cpu",
    log: Log = print,
    progress: Progress | None = None,
) -> TuningResult:
    """Train ``model``'s top ``config.trained_layers`` layers in place on ``examples``;
    ``progress(step, total, loss)`` after each batch of the frozen layers' pass (loss NaN) and
    each training step: the pass takes about as long a batch as a step does."""
    import torch

    from learning.losses import collate

    started, cpu_started = time.monotonic(), time.process_time()
    device = torch.device(device)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    decoder = model.get_decoder()
    layers = list(decoder.layers)
    trained = layers[len(layers) - max(1, min(config.trained_layers, len(layers))) :]
    model.requires_grad_(False)
    for module in (*trained, decoder.norm):
        module.requires_grad_(True)
    parameters = [p for p in model.parameters() if p.requires_grad]

    encoded = [turn_ids(tokenizer, list(e.prompt), e.reply) for e in examples]
    by_length = sorted(range(len(encoded)), key=lambda i: sum(map(len, encoded[i])))
    pad = padding_id(tokenizer)
    batches = [
        collate([(*encoded[i], 1) for i in by_length[start : start + config.batch_size]], pad)
        for start in range(0, len(by_length), config.batch_size)
    ]
    total = config.epochs * len(batches)
    total = min(total, config.max_steps) if config.max_steps else total
    from learning.precision import autocast_dtype

    bf16 = config.bf16
    if bf16 is None:
        bf16 = autocast_dtype(settings.LEARNING_AUTOCAST, device) is not None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    model.to(device).eval()  # no dropout in the frozen pass
    frozen_outputs = []
    for done, batch in enumerate(batches, start=1):
        with autocast:
            frozen_outputs.append(_input_of(trained[0], decoder, batch.to(device)))
        _log_progress(log, "frozen layers, batch", done, len(batches), started)
        if progress is not None:  # the frozen pass counts as steps: progress throughout
            progress(done, len(batches) + total, float("nan"))

    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config, total))
    result = TuningResult()
    phase_started = time.monotonic()
    model.train()
    with _only_layers(decoder, trained):
        for step, index in enumerate(_batch_order(len(batches), config.epochs, rng)[:total], 1):
            batch = batches[index].to(device)
            with autocast:
                loss = _reply_loss(model, decoder, frozen_outputs[index], batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.losses.append(round(loss.item(), 4))
            _log_progress(log, "step", step, total, phase_started, loss=result.losses[-1])
            if progress is not None:
                progress(len(batches) + step, len(batches) + total, result.losses[-1])
    model.eval()
    model.requires_grad_(True)
    result.seconds = time.monotonic() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def tune_base_version(
    base: ModelVersion, *, config: TuningConfig | None = None, log: Log = print
) -> ModelVersion:
    """Tune ``base`` for the knowledge base, register the result (a root version: the loop's
    θ₀) and activate it, ungated: the first start has no model to compare it with."""
    config = config or TuningConfig()
    log("Retrieving the knowledge-base articles for the tuning examples…")
    data = tuning_data(config, log=log)
    version = tuned_version(base, data.examples, config, log=log)
    return activate_version(version, note=f"{base.name} tuned for the knowledge base")


def tuned_version(
    base: ModelVersion,
    examples: Sequence[TuningExample],
    config: TuningConfig,
    *,
    log: Log = print,
    progress: Progress | None = None,
) -> ModelVersion:
    """``base`` tuned on ``examples``, registered (not activated). The checkpoint is named for
    what it was tuned on: the same base, examples and config register the one already there
    (a database set up again on the same CHECKPOINT_DIR, the same knowledge base imported
    again) instead of tuning again."""
    if not any(not example.declines for example in examples):
        raise TuningError(
            "No example question of the knowledge base retrieves its own article: add example "
            "questions to the articles (customers' wordings of what each answers)."
        )
    name = f"{base.name}-grounded-{_examples_digest(base, examples, config)}"
    version = ModelVersion.objects.filter(name=name).first()
    if version is not None:
        return version
    destination = Path(settings.CHECKPOINT_DIR) / name
    if not destination.exists():
        _tune_checkpoint(base, examples, config, destination, log, progress)
    metrics = {k: v for k, v in read_metadata(destination).items() if k.startswith("tuning_")}
    # A root of its own, neither parent nor anchor: the learning loop's θ₀ is the tuned model
    # (pulled toward SmolLM2 as downloaded, every run would also undo the tuning that makes it
    # answer from the articles). Its checkpoint names the base it was tuned from.
    return register_version(name, str(destination), ModelVersion.Source.TRAINED, metrics=metrics)


def _tune_checkpoint(
    base: ModelVersion,
    examples: Sequence[TuningExample],
    config: TuningConfig,
    destination: Path,
    log: Log,
    progress: Progress | None = None,
) -> None:
    device = pick_device(settings.LEARNING_DEVICE)
    model, tokenizer = load_checkpoint(base.checkpoint_path, device=str(device))
    declines = sum(example.declines for example in examples)
    log(
        f"Tuning {base.name} on {len(examples) - declines} answers and {declines} declines "
        f"(top {config.trained_layers} layers, {config.epochs} epochs)…"
    )
    result = tune(model, tokenizer, examples, config, device=device, log=log, progress=progress)
    log(f"Tuned in {_duration(result.seconds)} (CPU time {_duration(result.cpu_seconds)}).")
    metadata = {
        "base_model": base.name,
        "tuning_config": asdict(config),
        "tuning_examples": len(examples),
        "tuning_declines": declines,
        "tuning_final_loss": result.losses[-1] if result.losses else None,
        "tuning_seconds": round(result.seconds, 1),
        "tuning_cpu_seconds": round(result.cpu_seconds, 1),
    }
    write_checkpoint(model, tokenizer, destination, metadata)


class _FrozenOutput(Exception):
    """Carries the hidden states out of the forward pass once the frozen layers are done."""

    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def _input_of(first_trained: torch.nn.Module, decoder: Any, batch: Batch) -> torch.Tensor:
    """What the frozen embeddings and layers feed ``first_trained`` for ``batch``: the model's
    own forward pass (masks, positions), stopped where the trained layers begin."""
    import torch

    def stop(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        raise _FrozenOutput(args[0] if args else kwargs["hidden_states"])

    hook = first_trained.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        with torch.no_grad():
            decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    except _FrozenOutput as frozen:
        return frozen.hidden.detach()
    finally:
        hook.remove()
    raise TuningError("The forward pass never reached the trained layers.")


@contextmanager
def _only_layers(decoder: Any, layers: list[torch.nn.Module]) -> Iterator[None]:
    """The decoder runs ``layers`` alone (then its final norm) on the ``inputs_embeds`` given."""
    import torch

    everything = decoder.layers
    decoder.layers = torch.nn.ModuleList(layers)
    try:
        yield
    finally:
        decoder.layers = everything


def _reply_loss(model: Any, decoder: Any, frozen: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the reply tokens, projected onto the vocabulary there only."""
    import torch

    hidden = decoder(inputs_embeds=frozen, attention_mask=batch.attention_mask).last_hidden_state
    predicts_reply = batch.reply_mask[:, 1:]
    logits = model.get_output_embeddings()(hidden[:, :-1][predicts_reply]).float()
    return torch.nn.functional.cross_entropy(logits, batch.input_ids[:, 1:][predicts_reply])


def _batch_order(batch_count: int, epochs: int, rng: random.Random) -> list[int]:
    order = []
    for _ in range(epochs):
        epoch = list(range(batch_count))
        rng.shuffle(epoch)
        order.extend(epoch)
    return order


def _warmup_cosine(config: TuningConfig, total: int) -> Callable[[int], float]:
    warmup = max(1, int(total * config.warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def _log_progress(
    log: Log, what: str, done: int, total: int, started: float, *, loss: float | None = None
) -> None:
    """One line at about every twentieth of ``total``: done/total, the loss, time and ETA."""
    if done != total and done % max(1, total // 20) and done != 1:
        return
    elapsed = time.monotonic() - started
    shown_loss = f"  loss {loss:.4f}" if loss is not None else ""
    left = elapsed / done * (total - done)
    log(
        f"  {what} {done}/{total}{shown_loss}  {_duration(elapsed)} elapsed, "
        f"about {_duration(left)} left"
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _examples_digest(
    base: ModelVersion, examples: Sequence[TuningExample], config: TuningConfig
) -> str:
    payload = json.dumps(
        [base.checkpoint_path, asdict(config), [asdict(example) for example in examples]],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:10]

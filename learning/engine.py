"""The generation engine: one worker thread that owns the model and decodes replies.

Requests from any number of chat sessions go into one queue; the worker loads (or swaps) the
requested version between generations, prefills the chat-template prompt and decodes token by
token with the KV cache. Text deltas go back to each request's event loop through
``call_soon_threadsafe``, so the loop never waits on the model. The decode loop is written out
here, not delegated to ``generate()``, because it is the seed of a continuous-batching engine.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from django.conf import settings
from transformers import DynamicCache

from learning.checkpoints import CheckpointError, load_checkpoint
from learning.serving import ActiveVersion

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "error"]
REPLACEMENT_CHARACTER = "\ufffd"


class GenerationError(Exception):
    """A reply could not be generated (e.g. the checkpoint cannot be loaded)."""


@dataclass(frozen=True)
class ReplyResult:
    text: str
    model_version_id: int
    finish_reason: FinishReason
    token_count: int
    time_to_first_token_ms: float
    generation_ms: float


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 96
    max_context_tokens: int = 384
    temperature: float = 0.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 0


@dataclass
class _Request:
    version: ActiveVersion
    turns: list[dict[str, str]]
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


@dataclass(frozen=True)
class _Finished:
    result: ReplyResult
    error: str | None = None


@dataclass
class _LoadedModel:
    version: ActiveVersion
    model: Any
    tokenizer: Any
    stop_ids: frozenset[int]


class ReplyStream(AsyncIterator[str]):
    """Text deltas of one reply (never empty; their concatenation is ``result.text``).

    The request is queued on the first ``__anext__``. Abandoning the iteration (cancellation
    or ``aclose``) tells the worker to stop generating for it.
    """

    def __init__(self, engine: GenerationEngine, version: ActiveVersion, turns: list[dict]):
        self._engine = engine
        self._version = version
        self._turns = [{"role": t["role"], "content": t["content"]} for t in turns]
        self._request: _Request | None = None
        self._result: ReplyResult | None = None
        self._done = False

    @property
    def result(self) -> ReplyResult:
        if self._result is None:
            raise RuntimeError("The reply is not finished: iterate the stream first.")
        return self._result

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        if self._request is None:
            self._request = _Request(
                self._version, self._turns, asyncio.get_running_loop(), asyncio.Queue()
            )
            self._engine.submit(self._request)
        try:
            item = await self._request.outbox.get()
        except BaseException:
            self._request.cancelled = True
            raise
        if isinstance(item, str):
            return item
        self._done = True
        self._result = item.result
        if item.error is not None:
            raise GenerationError(item.error)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._request is not None and not self._done:
            self._request.cancelled = True
        self._done = True


class GenerationEngine:
    """Owns the loaded model and the one thread that runs it."""

    def __init__(self, options: GenerationOptions | None = None):
        self.options = options or GenerationOptions()
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._loaded: _LoadedModel | None = None
        self._generator: torch.Generator | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> GenerationEngine:
        device = settings.ENGINE_DEVICE
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(
            GenerationOptions(
                max_new_tokens=settings.GENERATION_MAX_NEW_TOKENS,
                max_context_tokens=settings.GENERATION_MAX_CONTEXT_TOKENS,
                temperature=settings.GENERATION_TEMPERATURE,
                seed=settings.GENERATION_SEED,
                device=device,
                threads=settings.ENGINE_THREADS,
            )
        )

    @property
    def loaded_version(self) -> ActiveVersion | None:
        loaded = self._loaded
        return loaded.version if loaded is not None else None

    def stream_reply(self, version: ActiveVersion, turns: list[dict[str, str]]) -> ReplyStream:
        """Stream the reply to ``turns`` (ending with the user's message) by ``version``."""
        return ReplyStream(self, version, turns)

    def submit(self, request: _Request) -> None:
        self._ensure_worker()
        self._requests.put(request)

    # --- the worker thread -------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="generation-engine", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self._generator = torch.Generator(device=self.options.device)
        self._generator.manual_seed(self.options.seed)
        while True:
            request = self._requests.get()
            if request.cancelled:
                continue
            try:
                self._serve(request)
            except Exception as error:  # the worker must survive any one request
                logger.exception("generation failed for version %s", request.version.name)
                self._finish(request, "", "error", 0, None, error=f"Generation failed: {error}")

    def _serve(self, request: _Request) -> None:
        try:
            loaded = self._load(request.version)
        except CheckpointError as error:
            self._finish(request, "", "error", 0, None, error=str(error))
            return
        with torch.inference_mode():
            self._decode(request, loaded)

    def _load(self, version: ActiveVersion) -> _LoadedModel:
        """The requested version's model, loading it (and dropping the old one) if needed."""
        loaded = self._loaded
        if loaded is not None and loaded.version == version:
            return loaded
        self._loaded = None
        model, tokenizer = load_checkpoint(version.checkpoint_path, device=self.options.device)
        stop_ids = {tokenizer.eos_token_id}
        end_id = tokenizer.convert_tokens_to_ids("<|end|>")
        if isinstance(end_id, int) and end_id != tokenizer.unk_token_id:
            stop_ids.add(end_id)
        stop_ids.update(_as_id_set(getattr(model.generation_config, "eos_token_id", None)))
        self._loaded = _LoadedModel(version, model, tokenizer, frozenset(stop_ids - {None}))
        logger.info("generation engine loaded %s", version.name)
        return self._loaded

    def _prompt_ids(self, loaded: _LoadedModel, turns: list[dict[str, str]]) -> list[int]:
        ids = loaded.tokenizer.apply_chat_template(
            turns, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)
        context = self.options.max_context_tokens
        model_limit = getattr(loaded.model.config, "max_position_embeddings", None)
        if model_limit:
            context = min(context, model_limit)
        return cut_prompt(ids, context - self.options.max_new_tokens, loaded.tokenizer.bos_token_id)

    def _decode(self, request: _Request, loaded: _LoadedModel) -> None:
        options = self.options
        model, tokenizer = loaded.model, loaded.tokenizer
        prompt = torch.tensor([self._prompt_ids(loaded, request.turns)], device=options.device)
        cache = DynamicCache(config=model.config)
        output = model(input_ids=prompt, cache=cache, use_cache=True)
        generated: list[int] = []
        emitted = ""
        first_token_at: float | None = None
        finish: FinishReason = "length"
        while len(generated) < options.max_new_tokens:
            if request.cancelled:
                finish = "error"
                break
            token = self._pick(output.logits[0, -1])
            generated.append(token)
            if first_token_at is None:
                first_token_at = time.perf_counter()
            if token in loaded.stop_ids:
                finish = "stop"
                break
            text = tokenizer.decode(generated, skip_special_tokens=True)
            stable = text.rstrip(REPLACEMENT_CHARACTER)
            if len(stable) > len(emitted) and stable.startswith(emitted):
                if not self._post(request, stable[len(emitted) :]):
                    return
                emitted = stable
            if len(generated) >= options.max_new_tokens:
                break
            step = torch.tensor([[token]], device=options.device)
            output = model(input_ids=step, cache=cache, use_cache=True)
        text = tokenizer.decode(
            [t for t in generated if t not in loaded.stop_ids], skip_special_tokens=True
        )
        if text.startswith(emitted) and len(text) > len(emitted):
            if not self._post(request, text[len(emitted) :]):
                return
            emitted = text
        self._finish(request, emitted, finish, len(generated), first_token_at)

    def _pick(self, logits: torch.Tensor) -> int:
        if self.options.temperature <= 0:
            return int(torch.argmax(logits).item())
        probabilities = torch.softmax(logits.float() / self.options.temperature, dim=-1)
        return int(torch.multinomial(probabilities, 1, generator=self._generator).item())

    def _post(self, request: _Request, item: str | _Finished) -> bool:
        """Hand ``item`` to the request's event loop; False when that loop is gone."""
        try:
            request.loop.call_soon_threadsafe(request.outbox.put_nowait, item)
        except RuntimeError:
            request.cancelled = True
            return False
        return True

    def _finish(
        self,
        request: _Request,
        text: str,
        finish: FinishReason,
        token_count: int,
        first_token_at: float | None,
        *,
        error: str | None = None,
    ) -> None:
        now = time.perf_counter()
        result = ReplyResult(
            text=text,
            model_version_id=request.version.id,
            finish_reason="error" if error is not None else finish,
            token_count=token_count,
            time_to_first_token_ms=round(((first_token_at or now) - request.submitted) * 1000, 2),
            generation_ms=round((now - request.submitted) * 1000, 2),
        )
        self._post(request, _Finished(result, error))


def cut_prompt(ids: list[int], budget: int, bos_id: int | None) -> list[int]:
    """The last ``budget`` prompt ids (at least one), keeping a leading ``bos_id``."""
    budget = max(1, budget)
    if len(ids) <= budget:
        return ids
    keep_bos = bos_id is not None and ids[0] == bos_id and budget > 1
    return ([bos_id] if keep_bos else []) + ids[len(ids) - (budget - int(keep_bos)) :]


def _as_id_set(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}

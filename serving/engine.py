"""The generation engine: one worker thread that batches the replies of every chat session.

Requests from any number of sessions (and event loops) go into one queue. The worker keeps a
*running batch*: the sequences being decoded, their shared key/value cache, left-padded so that
every sequence's newest token sits in the last column, an attention mask over the padding, and
each sequence's own next position id. Every iteration it

1. drops sequences whose client went away (they cost nothing from this step on);
2. decodes one token for every running sequence in one forward pass, streams each sequence's
   new text to its own consumer, and lets finished sequences (end of turn, token limit) leave;
3. admits queued requests (continuous batching): newcomers are prefilled together in one
   left-padded forward pass, their first token is picked, and their cache is merged into the
   running batch's cache (both padded on the left to a common length), so they decode with
   the others from the next step on.

Swapping to another model version happens only when no sequence runs on the loaded one:
requests are admitted in arrival order, and a request for another version stops admission until
the running sequences have finished on their version. Text deltas go back to each request's
event loop with one ``call_soon_threadsafe`` per loop and step, so no loop waits on the model.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from django.conf import settings
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from serving import chat_template
from serving.checkpoints import CheckpointError, load_checkpoint, pick_device
from serving.generation import ActiveVersion, EngineBusy, FinishReason, ReplyResult

logger = logging.getLogger(__name__)

REPLACEMENT_CHARACTER = "\ufffd"


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 96
    max_context_tokens: int = 384
    temperature: float = 0.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    # Sequences decoded together at most.
    max_batch: int = 32
    # When the engine is idle, how long the first request waits for others to prefill with it.
    batch_wait_ms: float = 0.0
    # Accepted requests (queued + running) at most; past it `stream_reply` raises EngineBusy.
    max_queue: int = 256


@dataclass
class _Request:
    version: ActiveVersion
    turns: list[dict[str, str]]
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    # At most this many new tokens (None: GENERATION_MAX_NEW_TOKENS; never more than it).
    max_new_tokens: int | None = None


@dataclass
class _LoadedModel:
    version: ActiveVersion
    model: Any
    tokenizer: Any
    stop_ids: frozenset[int]


class IncrementalText:
    """Turns a growing list of token ids into text deltas, safely for UTF-8 and whitespace.

    Decoding token by token loses what spans tokens: a character split over byte-level tokens
    decodes to U+FFFD until its last byte arrives, and a tokenizer may render a token's leading
    space differently depending on what precedes it. So each new token is decoded together with
    the tokens before it (from ``prefix``) and only the text beyond what those gave is new; text
    ending in U+FFFD is held back until the character is complete.
    """

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # ids before this index are settled and emitted
        self._read = 0  # ids[prefix:read] decode to the text emitted last
        self.text = ""

    def push(self, token: int) -> str:
        """Add a token; returns the new text that is safe to show (possibly "")."""
        self._ids.append(token)
        settled = self._decode(self._ids[self._prefix : self._read])
        current = self._decode(self._ids[self._prefix :])
        if len(current) <= len(settled) or current.endswith(REPLACEMENT_CHARACTER):
            return ""
        delta = current[len(settled) :]
        self._prefix, self._read = self._read, len(self._ids)
        self.text += delta
        return delta

    def flush(self) -> str:
        """What is still held back (an incomplete character stays as U+FFFD)."""
        settled = self._decode(self._ids[self._prefix : self._read])
        current = self._decode(self._ids[self._prefix :])
        delta = current[len(settled) :] if len(current) > len(settled) else ""
        self._prefix = self._read = len(self._ids)
        self.text += delta
        return delta


@dataclass
class _Sequence:
    """A request being decoded: its tokens so far and the text sent of them."""

    request: _Request
    text: IncrementalText
    generated: int = 0
    first_token_at: float | None = None
    finished: bool = False


class _Batch:
    """The running sequences of one model and their shared, left-padded KV cache.

    Row i of ``cache``, ``mask`` and ``positions`` belongs to ``sequences[i]``; every
    sequence's newest token is in the last column, earlier columns may be padding
    (``mask`` 0, zero keys and values). ``positions`` is each sequence's next position id.
    """

    def __init__(self, loaded: _LoadedModel, device: str):
        self.loaded = loaded
        self.sequences: list[_Sequence] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.empty(0, 0, dtype=torch.long, device=device)
        self.positions = torch.empty(0, dtype=torch.long, device=device)
        self.last_tokens = torch.empty(0, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return len(self.sequences)

    def step(self) -> torch.Tensor:
        """Run the last tokens through the model; returns next-token logits [batch, vocab]."""
        mask = torch.cat([self.mask, self.mask.new_ones(len(self), 1)], dim=1)
        output = self.loaded.model(
            input_ids=self.last_tokens[:, None],
            attention_mask=mask,
            position_ids=self.positions[:, None],
            cache=self.cache,
            use_cache=True,
        )
        self.mask = mask
        self.positions = self.positions + 1
        return output.logits[:, -1]

    def merge(
        self,
        sequences: list[_Sequence],
        cache: DynamicCache,
        mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        """Add prefilled sequences: pad both caches on the left to one length and stack them."""
        if self.cache is None or not self.sequences:
            self.sequences, self.cache, self.mask, self.positions = (
                list(sequences),
                cache,
                mask,
                positions,
            )
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, length), _pad_left(theirs.keys, length)])
            mine.values = torch.cat(
                [_pad_left(mine.values, length), _pad_left(theirs.values, length)]
            )
        self.mask = torch.cat([_pad_left(self.mask, length), _pad_left(mask, length)])
        self.positions = torch.cat([self.positions, positions])
        self.sequences.extend(sequences)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in order), and cut the columns that are padding in all of them."""
        if len(rows) == len(self):
            return
        self.sequences = [self.sequences[i] for i in rows]
        if not rows:
            self.cache = None
            self.mask = self.mask[:0, :0]
            self.positions = self.positions[:0]
            self.last_tokens = self.last_tokens[:0]
            return
        index = torch.tensor(rows, device=self.mask.device)
        self.mask = self.mask[index]
        self.positions = self.positions[index]
        self.last_tokens = self.last_tokens[index]
        start = int(self.mask.any(dim=0).int().argmax())
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad the sequence dimension (-2 for keys/values [b, h, t, d], -1 for a mask [b, t])."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class ReplyStream(AsyncIterator[str]):
    """Text deltas of one reply (never empty; their concatenation is ``result.text``).

    Deltas that arrived while the consumer was busy come out joined, so a slow consumer reads
    fewer, longer deltas rather than falling behind. ``cancel()``, cancelling the iteration or
    ``aclose()`` tell the worker to stop: the sequence leaves the batch at its next step and
    the result, with the text decoded so far, has finish reason ``disconnected``. The iteration
    ends normally however the reply ended, a failed generation included: read ``result``.
    """

    def __init__(self, request: _Request):
        self._request = request
        self._final: ReplyResult | None = None
        self._result: ReplyResult | None = None
        self._done = False

    @property
    def result(self) -> ReplyResult:
        if self._result is None:
            raise RuntimeError("The reply is not finished: iterate the stream first.")
        return self._result

    async def open(self) -> bool:
        """Nothing to wait for: the engine accepted the request in ``stream_reply`` (a remote
        backend's stream waits here for the server to accept it)."""
        return True

    def cancel(self) -> None:
        """The client went away: stop generating (the stream still ends with a result)."""
        self._request.cancelled = True

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        outbox = self._request.outbox
        item: str | ReplyResult | None = self._final
        if item is None:
            try:
                item = await outbox.get()
            except BaseException:
                self._request.cancelled = True
                raise
        if isinstance(item, str):
            parts = [item]
            while not outbox.empty():
                more = outbox.get_nowait()
                if isinstance(more, ReplyResult):
                    self._final = more
                    break
                parts.append(more)
            return "".join(parts)
        self._done = True
        self._result = item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._done:
            self._request.cancelled = True
        self._done = True


class GenerationEngine:
    """Owns the loaded model and the one thread that runs it for every session."""

    def __init__(self, options: GenerationOptions | None = None):
        self.options = options or GenerationOptions()
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._loaded: _LoadedModel | None = None
        self._generator: torch.Generator | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._accepted_lock = threading.Lock()
        self._accepted = 0
        self._posts: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Any]]] = {}
        # Observability (benchmarks, tests): decoding steps run and the largest batch seen.
        self.steps = 0
        self.peak_batch = 0
        self.running = 0

    @classmethod
    def from_settings(cls) -> GenerationEngine:
        device = pick_device(settings.GENERATION_ENGINE_DEVICE).type
        return cls(
            GenerationOptions(
                max_new_tokens=settings.GENERATION_MAX_NEW_TOKENS,
                max_context_tokens=settings.GENERATION_MAX_CONTEXT_TOKENS,
                temperature=settings.GENERATION_TEMPERATURE,
                seed=settings.GENERATION_SEED,
                device=device,
                threads=settings.GENERATION_ENGINE_THREADS,
                max_batch=settings.GENERATION_ENGINE_MAX_BATCH,
                batch_wait_ms=settings.GENERATION_ENGINE_BATCH_WAIT_MS,
                max_queue=settings.GENERATION_ENGINE_MAX_QUEUE,
            )
        )

    @property
    def loaded_version(self) -> ActiveVersion | None:
        loaded = self._loaded
        return loaded.version if loaded is not None else None

    @property
    def accepted(self) -> int:
        """Requests accepted and not finished yet (queued or running)."""
        return self._accepted

    def stream_reply(
        self,
        version: ActiveVersion,
        turns: list[dict[str, str]],
        *,
        max_new_tokens: int | None = None,
    ) -> ReplyStream:
        """Queue the reply to ``turns`` (ending with the user's message) by ``version``.

        Call it on the event loop that iterates the stream. Raises EngineBusy at once when
        GENERATION_ENGINE_MAX_QUEUE requests are already queued or running; nothing accepted is
        dropped.
        ``max_new_tokens`` lowers the engine's token limit for this reply only.
        """
        request = _Request(
            version,
            [{"role": t["role"], "content": t["content"]} for t in turns],
            asyncio.get_running_loop(),
            asyncio.Queue(),
            max_new_tokens=max_new_tokens,
        )
        with self._accepted_lock:
            if self._accepted >= self.options.max_queue:
                raise EngineBusy(f"{self._accepted} replies are queued or running.")
            self._accepted += 1
        self._ensure_worker()
        self._requests.put(request)
        return ReplyStream(request)

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
        pending: deque[_Request] = deque()
        batch: _Batch | None = None
        while True:
            self._collect(pending, idle=batch is None or not batch.sequences)
            try:
                with torch.inference_mode():
                    batch = self._iterate(pending, batch)
            except Exception as error:  # the worker must survive any one batch
                logger.exception("generation failed")
                for sequence in batch.sequences if batch is not None else []:
                    self._finish(sequence, "error", error=f"Generation failed: {error}")
                batch = None
            finally:
                self._flush_posts()
            self.running = len(batch) if batch is not None else 0

    def _collect(self, pending: deque[_Request], *, idle: bool) -> None:
        """Move queued requests to ``pending``; when idle, block for one and wait for more."""
        if idle and not pending:
            pending.append(self._requests.get())
            deadline = time.perf_counter() + self.options.batch_wait_ms / 1000
            while len(pending) < self.options.max_batch:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    pending.append(self._requests.get(timeout=left))
                except queue.Empty:
                    break
        while True:
            try:
                pending.append(self._requests.get_nowait())
            except queue.Empty:
                return

    def _iterate(self, pending: deque[_Request], batch: _Batch | None) -> _Batch | None:
        """One decoding step of the running batch, then admit what may join it."""
        if batch is not None and batch.sequences:
            self._drop_cancelled(batch)
        if batch is not None and batch.sequences:
            logits = batch.step()
            self.steps += 1
            self._take_tokens(batch, self._pick(logits))
        for request in [r for r in pending if r.cancelled]:
            pending.remove(request)
            self._finish_request(request, "", "disconnected", 0, None)
        if not pending:
            return batch
        if batch is None or not batch.sequences:
            batch = self._start_batch(pending)
            if batch is None:
                return None
        newcomers = self._admit(pending, batch)
        if newcomers:
            self._prefill(batch, newcomers)
        self.peak_batch = max(self.peak_batch, len(batch))
        return batch

    def _start_batch(self, pending: deque[_Request]) -> _Batch | None:
        """An empty batch on the version the oldest pending request asks for (loading it)."""
        version = pending[0].version
        try:
            loaded = self._load(version)
        except Exception as error:  # a version that cannot load fails its requests, not the engine
            if not isinstance(error, CheckpointError):
                logger.exception("loading %s failed", version.name)
            for request in [r for r in pending if r.version == version]:
                pending.remove(request)
                self._finish_request(request, "", "error", 0, None, error=str(error))
            return None
        return _Batch(loaded, self.options.device)

    def _admit(self, pending: deque[_Request], batch: _Batch) -> list[_Request]:
        """Pending requests that join ``batch`` now, in arrival order, on its version only."""
        newcomers: list[_Request] = []
        while pending and len(batch) + len(newcomers) < self.options.max_batch:
            if pending[0].version != batch.loaded.version:
                break  # a version swap waits until the running sequences have finished
            newcomers.append(pending.popleft())
        return newcomers

    def _load(self, version: ActiveVersion) -> _LoadedModel:
        """The requested version's model, loading it (and dropping the old one) if needed."""
        loaded = self._loaded
        if loaded is not None and loaded.version == version:
            return loaded
        self._loaded = None
        model, tokenizer = load_checkpoint(version.checkpoint_path, device=self.options.device)
        layers = DynamicCache(config=model.config).layers
        if not all(type(layer) is DynamicLayer for layer in layers):
            raise CheckpointError(f"{version.name}: only full-attention caches can be batched.")
        self._loaded = _LoadedModel(
            version, model, tokenizer, chat_template.stop_ids(model, tokenizer)
        )
        logger.info("generation engine loaded %s", version.name)
        return self._loaded

    def prompt_ids(self, loaded: _LoadedModel, turns: list[dict[str, str]]) -> list[int]:
        """The chat-template prompt, cut from the left to leave room for the reply."""
        context = self.options.max_context_tokens
        model_limit = getattr(loaded.model.config, "max_position_embeddings", None)
        if model_limit:
            context = min(context, model_limit)
        return chat_template.prompt_ids(
            loaded.tokenizer, turns, budget=context - self.options.max_new_tokens
        )

    def _prefill(self, batch: _Batch, requests: list[_Request]) -> None:
        """Run the newcomers' prompts as one left-padded batch and merge them into ``batch``."""
        loaded, device = batch.loaded, self.options.device
        try:
            prompts = [self.prompt_ids(loaded, request.turns) for request in requests]
        except Exception as error:
            for request in requests:
                self._finish_request(request, "", "error", 0, None, error=f"Bad prompt: {error}")
            return
        ids, mask = chat_template.left_padded(
            prompts, chat_template.padding_id(loaded.tokenizer), device
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=loaded.model.config)
        try:
            output = loaded.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        except Exception as error:  # the running batch is untouched: only these fail
            logger.exception("prefill failed")
            for request in requests:
                self._finish_request(
                    request, "", "error", 0, None, error=f"Generation failed: {error}"
                )
            return
        decode = _decoder(loaded.tokenizer)
        sequences = [_Sequence(request, IncrementalText(decode)) for request in requests]
        batch.merge(sequences, cache, mask, positions[:, -1] + 1)
        # The newcomers are the last rows of the batch now: take their first tokens.
        tokens = torch.cat([batch.last_tokens, self._pick(output.logits[:, -1])])
        self._take_tokens(batch, tokens, only_from=len(batch) - len(sequences))

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        if self.options.temperature <= 0:
            return torch.argmax(logits, dim=-1)
        probabilities = torch.softmax(logits.float() / self.options.temperature, dim=-1)
        return torch.multinomial(probabilities, 1, generator=self._generator)[:, 0]

    def _take_tokens(self, batch: _Batch, tokens: torch.Tensor, *, only_from: int = 0) -> None:
        """Append each sequence's new token, stream its text, and let finished ones leave."""
        batch.last_tokens = tokens
        stop_ids = batch.loaded.stop_ids
        limit = self.options.max_new_tokens
        now = time.perf_counter()
        keep = list(range(only_from))
        for row, token in enumerate(tokens[only_from:].tolist(), start=only_from):
            sequence = batch.sequences[row]
            sequence.generated += 1
            if sequence.first_token_at is None:
                sequence.first_token_at = now
            if token in stop_ids:
                self._finish(sequence, "stop")
                continue
            delta = sequence.text.push(token)
            if delta:
                self._post(sequence.request, delta)
            if sequence.generated >= min(limit, sequence.request.max_new_tokens or limit):
                self._finish(sequence, "length")
                continue
            keep.append(row)
        batch.keep(keep)

    def _drop_cancelled(self, batch: _Batch) -> None:
        """Sequences whose client went away leave before the next step costs anything."""
        keep = []
        for row, sequence in enumerate(batch.sequences):
            if sequence.request.cancelled:
                self._finish(sequence, "disconnected")
            else:
                keep.append(row)
        batch.keep(keep)

    # --- handing results to the event loops ----------------------------------------------

    def _post(self, request: _Request, item: str | ReplyResult) -> None:
        self._posts.setdefault(request.loop, []).append((request, item))

    def _flush_posts(self) -> None:
        """One wake-up per event loop per step, however many of its replies moved."""
        posts, self._posts = self._posts, {}
        for loop, items in posts.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the loop is closed: nobody reads these replies any more
                for request, _ in items:
                    request.cancelled = True

    def _finish(
        self, sequence: _Sequence, finish: FinishReason, *, error: str | None = None
    ) -> None:
        if sequence.finished:
            return
        sequence.finished = True
        tail = sequence.text.flush()
        if tail:
            self._post(sequence.request, tail)
        self._finish_request(
            sequence.request,
            sequence.text.text,
            finish,
            sequence.generated,
            sequence.first_token_at,
            error=error,
        )

    def _finish_request(
        self,
        request: _Request,
        text: str,
        finish: FinishReason,
        token_count: int,
        first_token_at: float | None,
        *,
        error: str | None = None,
    ) -> None:
        """Hand the request its result, the last item of its stream; ``error`` makes it failed."""
        now = time.perf_counter()
        result = ReplyResult(
            text=text,
            model_version_id=request.version.id,
            finish_reason="error" if error is not None else finish,
            token_count=token_count,
            time_to_first_token_ms=round(((first_token_at or now) - request.submitted) * 1000, 2),
            generation_ms=round((now - request.submitted) * 1000, 2),
            error=error,
        )
        self._post(request, result)
        with self._accepted_lock:
            self._accepted -= 1


def _deliver(items: list[tuple[_Request, Any]]) -> None:
    for request, item in items:
        request.outbox.put_nowait(item)


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True) if ids else ""

    return decode

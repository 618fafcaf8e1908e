"""The chat template: conversations as token ids, and a model's greedy replies read back.

Everything that talks to a model through its chat template goes through here: the generation
engine, the training examples, the gate's measures, the protection of golden answers, the
starter builder and the benchmarks. So the padding, where a reply stops and what counts as
stating a fact are each written once, and a new base model changes this module only. The
turns themselves, as text (the grounded prompt), are the answering layer's:
``knowledge.prompt``.

torch is imported inside the decoding functions only: ``learning.examples`` uses the prompt
functions and is imported when Django starts (through the admin's export), where no model runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from knowledge.prompt import Turn, neutralised, neutralised_turns

if TYPE_CHECKING:
    import torch


# The end-of-turn token of the starter's template. Where a tokenizer has it and its
# end-of-sequence token is another one, a reply still ends with the turn.
END_OF_TURN = "<|end|>"


def chat_ids(tokenizer: Any, turns: Sequence[Turn], *, add_generation_prompt: bool) -> list[int]:
    """``apply_chat_template`` token ids as a plain list, whatever the transformers version
    returns (a list, or a mapping holding ``input_ids``). The turns' text is ``neutralised``
    first: a special token typed in it stays text (``knowledge.prompt``)."""
    ids = tokenizer.apply_chat_template(
        neutralised_turns(turns, special_tokens(tokenizer)),
        add_generation_prompt=add_generation_prompt,
        tokenize=True,
        return_dict=False,
    )
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def special_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special tokens (its added ones marked special included), longest
    first."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    found.update(token.content for token in decoder.values() if getattr(token, "special", False))
    return tuple(sorted(found, key=len, reverse=True))


def without_oldest_turn(turns: Sequence[Turn]) -> list[Turn] | None:
    """``turns`` less the oldest turn that may go to make a prompt fit: the first one after a
    leading system turn (the articles stay). None when only one turn is left besides it."""
    first = 1 if turns and turns[0]["role"] == "system" else 0
    if len(turns) - first <= 1:
        return None
    return [*turns[:first], *turns[first + 1 :]]


def prompt_ids(tokenizer: Any, turns: Sequence[Turn], *, budget: int | None = None) -> list[int]:
    """The ids that ask for the assistant's reply to ``turns``; with a ``budget``, at most that
    many: cut from the left (see ``cut_prompt``).

    A prompt that starts with a system turn (a grounded prompt) first loses whole turns after
    it, oldest first (``without_oldest_turn``), so that the articles stay; only what is still
    too long is cut from the left. Other prompts are cut from the left at once, which keeps the
    most of the conversation.
    """
    ids = chat_ids(tokenizer, turns, add_generation_prompt=True)
    if budget is None:
        return ids
    if turns and turns[0]["role"] == "system":
        while len(ids) > budget and (fewer := without_oldest_turn(turns)) is not None:
            turns = fewer
            ids = chat_ids(tokenizer, turns, add_generation_prompt=True)
    return cut_prompt(ids, budget, tokenizer.bos_token_id)


def cut_prompt(ids: list[int], budget: int, bos_id: int | None) -> list[int]:
    """The last ``budget`` prompt ids (at least one), keeping a leading ``bos_id``."""
    budget = max(1, budget)
    if len(ids) <= budget:
        return ids
    keep_bos = bos_id is not None and ids[0] == bos_id and budget > 1
    return ([bos_id] if keep_bos else []) + ids[len(ids) - (budget - int(keep_bos)) :]


def turn_ids(tokenizer: Any, context: Sequence[Turn], reply: str) -> tuple[list[int], list[int]]:
    """The prompt for ``context`` and the ids of ``reply`` as the assistant's turn after it.

    The reply's ids are the template's rendering of the turn (end-of-turn included): the
    conversation with the reply minus the prompt. A template that renders the prompt otherwise
    once a reply follows (so the prompt is no prefix) gets the reply's own tokens and
    end-of-sequence.
    """
    prompt = prompt_ids(tokenizer, context)
    full = chat_ids(
        tokenizer, [*context, {"role": "assistant", "content": reply}], add_generation_prompt=False
    )
    if full[: len(prompt)] == prompt:
        return prompt, full[len(prompt) :]
    own = tokenizer(neutralised(reply, special_tokens(tokenizer)), add_special_tokens=False)[
        "input_ids"
    ]
    return prompt, [*own, tokenizer.eos_token_id]


def padding_id(tokenizer: Any) -> int:
    """The id that fills the short rows of a batch: the pad token, else end-of-sequence, else 0.

    Padding is masked out of attention and out of the loss, so the id changes no result; it
    must only be a real row of the embedding. The pad token is meant for it; many pretrained
    tokenizers have none, and end-of-sequence is then the usual stand-in (``generate`` takes it
    too); 0 is for a tokenizer with neither. One rule, so that every batch of one tokenizer
    pads alike (training, the gate, the engine and the benchmarks).
    """
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def stop_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The ids that end a reply: end-of-sequence, the end-of-turn token where the vocabulary
    has it, and the ids the model's ``generation_config`` ends on."""
    ids = {tokenizer.eos_token_id}
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(end_id, int) and end_id != tokenizer.unk_token_id:
        ids.add(end_id)
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(int(i) for i in configured)
    return frozenset(ids - {None})


def states_facts(reply: str, facts: Iterable[str]) -> bool:
    """Whether ``reply`` contains every one of ``facts`` (case-insensitive substrings)."""
    lowered = reply.lower()
    return all(fact.lower() in lowered for fact in facts)


def left_padded(
    prompts: Sequence[Sequence[int]], pad: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompts`` as one batch padded on the left, and its attention mask: every prompt's last
    token is in the last column, where decoding goes on."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def greedy_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Greedy replies to chat-template prompts (token ids), batched with left padding (rotary
    positions are relative). A reply ends where the engine's does: at a ``stop_ids`` token
    (not part of the text) or after ``max_new_tokens``. ``progress(done, total)`` after each
    batch."""
    import torch

    was_training = model.training
    model.eval()
    pad, stops = padding_id(tokenizer), stop_ids(model, tokenizer)
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            input_ids, mask = left_padded(prompts[start : start + batch_size], pad, device)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=sorted(stops),
                    pad_token_id=pad,
                )
            for row in output[:, input_ids.shape[1] :].tolist():
                end = next((i for i, token in enumerate(row) if token in stops), len(row))
                replies.append(tokenizer.decode(row[:end], skip_special_tokens=True))
            if progress is not None:
                progress(len(replies), len(prompts))
    finally:
        model.train(was_training)
    return replies


def greedy_replies(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> list[str]:
    """Greedy single-turn replies to ``questions``, batched."""
    prompts = [prompt_ids(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    return greedy_continuations(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
    )

"""A small byte-level BPE tokenizer trained on the starter corpus, with the chat template.

The template renders ``<|bos|>`` once, then each turn as ``<|user|>text<|end|>`` or
``<|assistant|>text<|end|>``; with ``add_generation_prompt`` it ends in ``<|assistant|>``. So
the prompt for a reply is a token prefix of the conversation that includes the reply, which
``serving.chat_template.turn_ids`` relies on. ``<|end|>`` is the end-of-turn and the eos token.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD = "<|pad|>"
BOS = "<|bos|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
SPECIAL_TOKENS = [PAD, BOS, USER, ASSISTANT, END]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>' + message['content'] + '<|end|>' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<|assistant|>' + message['content'] + '<|end|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 3000) -> PreTrainedTokenizerFast:
    """Train the BPE on ``texts``; deterministic for the same texts and vocabulary size."""
    backend = Tokenizer(models.BPE())
    # No prefix space: decoding must give back exactly the text that was encoded.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer

"""A tiny sentence encoder built in the test session (a second, no download), and using it.

``build_tiny_encoder`` makes a WordPiece tokenizer of the starter corpus's words and
builds a one-layer BertModel that is a bag of word pieces in BERT's clothing: every word piece
has its own orthogonal direction, and position and token-type embeddings, the attention's output
and the feed-forward output are zero, so each token's last hidden state is its own word piece's
direction and the special tokens' is zero. Mean pooling then gives the normalised count of the
text's word pieces, and the cosine of two texts is how many word pieces they share. Retrieval
tests with it prove the plumbing (embedding on save, the stored vectors, the index, its refresh,
top-k and the scores) with an encoder whose ranking is known in advance: the article that shares
the most words with the question wins. How well MiniLM ranks is measured by the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

VOCABULARY_SIZE = 600
HIDDEN_SIZE = 640  # at least the vocabulary size, so that the word pieces can be orthogonal
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_encoder(destination: Path, *, seed: int = 0) -> Path:
    """Save the tiny encoder and its tokenizer into ``destination``; ``seed`` picks the weights."""
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from knowledge.demo.corpus import load_corpus

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = Tokenizer(WordPiece(_vocabulary(load_corpus().texts(), normalizer, pre_tokenizer)))
    tokenizer.model.unk_token = "[UNK]"
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    model = BertModel(config)
    with torch.no_grad():
        embeddings = model.embeddings
        torch.nn.init.orthogonal_(embeddings.word_embeddings.weight)
        for token in SPECIAL_TOKENS:
            embeddings.word_embeddings.weight[tokenizer.token_to_id(token)].zero_()
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        for layer in model.encoder.layer:
            for output in (layer.attention.output.dense, layer.output.dense):
                output.weight.zero_()
                output.bias.zero_()
    model.save_pretrained(destination, safe_serialization=True)
    wrapped.save_pretrained(destination)
    return destination


def _vocabulary(texts, normalizer, pre_tokenizer) -> dict[str, int]:
    """Special tokens, every character (alone and as a continuation), then the corpus's most
    frequent words, ties in alphabetical order: the same vocabulary in every session (the
    tokenizers library's WordPiece trainer breaks ties differently from run to run, and one
    word more or less changed which article a test question retrieved)."""
    from collections import Counter

    words: Counter[str] = Counter()
    for text in texts:
        split = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        words.update(word for word, _ in split)
    characters = sorted({character for word in words for character in word})
    pieces = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    frequent = sorted((word for word in words if len(word) > 1), key=lambda w: (-words[w], w))
    pieces += frequent[: max(0, VOCABULARY_SIZE - len(pieces))]
    return {piece: index for index, piece in enumerate(pieces)}


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """Directory of the tiny encoder (seed 0), built once per test session."""
    return build_tiny_encoder(tmp_path_factory.mktemp("encoders") / "tiny-encoder")


@pytest.fixture(scope="session")
def second_tiny_encoder_dir(tmp_path_factory) -> Path:
    """Another tiny encoder (seed 1): other weights, so another encoder name."""
    return build_tiny_encoder(tmp_path_factory.mktemp("encoders") / "tiny-encoder", seed=1)


@pytest.fixture
def tiny_encoder(settings, tiny_encoder_dir):
    """KNOWLEDGE_ENCODER is the tiny encoder; this process's index is re-read before and after."""
    from knowledge.encoder import get_encoder
    from knowledge.index import forget_index

    settings.KNOWLEDGE_ENCODER = str(tiny_encoder_dir)
    forget_index()
    yield get_encoder()
    forget_index()

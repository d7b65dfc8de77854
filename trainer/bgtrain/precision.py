"""Training arithmetic: bf16 autocast where the CPU has bf16 hardware, float32 elsewhere.

Why: on a CPU with AMX (bf16 tiles) or AVX-512 BF16, oneDNN runs bf16 convolutions in hardware
(the measured step speed-up is in docs/benchmarks.md, ``benchmarks/bench_train.py``); without those
instructions bf16 is emulated and slower than float32, so ``auto`` picks it only where the
hardware is there. What autocast changes and what it does not:

* convolutions (forward and backward) run in bf16; the weights, Adam's state and the weight
  average stay float32 (autocast casts per op; it never changes a parameter);
* BatchNorm, pooling, the input stem's element-wise arithmetic and the loss stay float32 --
  the train loop casts the logits to float32 before the focal loss, outside autocast;
* validation and every exported/deployed model run in float32: nothing outside the training
  step is under autocast.

On CUDA ``auto`` keeps the float32 path (not measured here); ``bf16`` asks for bf16 autocast
where the GPU supports it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch

from bgsdk.errors import UserError

__all__ = ["PRECISIONS", "Precision", "cpu_flags", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")
# /proc/cpuinfo flags that mean bf16 arithmetic in hardware (AMX tiles, or AVX-512 BF16 dot products).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    """What the training step computes in: ``name`` is recorded in checkpoints, ``reason`` is logged."""

    name: str  # "fp32" or "bf16"
    reason: str  # e.g. "bf16 autocast (AMX detected)"
    device_type: str = "cpu"

    def autocast(self) -> ContextManager[object]:
        """The context the forward pass runs in (a no-op for fp32)."""
        if self.name == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's ISA flags from ``/proc/cpuinfo`` (empty where there is none, e.g. not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpu_choice(flags: set[str]) -> Precision:
    if "amx_bf16" in flags:
        return Precision("bf16", "bf16 autocast (AMX detected)")
    if "avx512_bf16" in flags:
        return Precision("bf16", "bf16 autocast (AVX-512 BF16 detected)")
    return Precision("fp32", "fp32 (no AMX or AVX-512 BF16 on this CPU)")


def resolve_precision(requested: str, device: torch.device, flags: set[str] | None = None) -> Precision:
    """``auto``/``fp32``/``bf16`` -> the precision a run uses on ``device`` (``flags``: the CPU's, for tests)."""
    if requested not in PRECISIONS:
        raise UserError(f"--precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        if requested == "bf16":
            if not torch.cuda.is_bf16_supported():
                raise UserError("--precision bf16: this CUDA device has no bf16 support")
            return Precision("bf16", "bf16 autocast (asked)", "cuda")
        return Precision("fp32", f"fp32 ({'asked' if requested == 'fp32' else 'the CUDA default'})", "cuda")
    if requested == "fp32":
        return Precision("fp32", "fp32 (asked)")
    if requested == "bf16":
        found = flags if flags is not None else cpu_flags()
        note = "" if found & set(BF16_FLAGS) else "; this CPU has no bf16 hardware, expect it to be slow"
        return Precision("bf16", f"bf16 autocast (asked{note})")
    return _cpu_choice(flags if flags is not None else cpu_flags())

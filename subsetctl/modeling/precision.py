"""Whether ``model.dtype`` suits the device the model stages would run on here.

A spec written for a GPU (``dtype: float16`` or ``bfloat16``, ``device: auto``) copied to a
machine without one runs every model stage on the CPU in that precision: float16 matrix
products there are many times slower than float32's (about 16× in a 512 × 576 × 1536 test on
a 2-core AMD EPYC), and bfloat16 ones are slower too on CPUs without bfloat16 instructions.
``validate``, ``plan`` and ``run`` say so before meta_init starts (see
:func:`subsetctl.spec_checks.spec_warnings`).
"""

from __future__ import annotations

import platform
from pathlib import Path

#: /proc/cpuinfo flags of the x86 instructions that compute in bfloat16 (AVX512-BF16, AMX)
_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU has bfloat16 instructions, from ``cpuinfo``'s flags (Linux); None
    where that cannot be told (no such file: macOS, Windows; or one without x86 flags)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags") and ":" in line), None)
    if flags is None:
        return None
    return any(flag in flags for flag in _BFLOAT16_FLAGS)


def slow_dtype_on_cpu(dtype: str, device: str) -> str | None:
    """Why ``dtype`` is a poor choice for the model stages on the CPU, naming ``device``
    (the spec's ``model.device``, ``auto`` or ``cpu``: the caller has found that it means
    the CPU here); None for float32, and for bfloat16 on a CPU that has bfloat16
    instructions or one whose instructions cannot be told."""
    where = ("model.device is auto and this torch sees no CUDA GPU, so the model stages would run on the CPU"
             if device == "auto" else "model.device is cpu")
    fix = ("Use model.dtype: float32 on this machine (a spec meant for a machine with a GPU can ignore "
           "this).")
    if dtype == "float16":
        return (f"float16, but {where}: CPUs have no fast float16 arithmetic, so every matrix product "
                f"takes many times longer than in float32 (about 16× on a 2-core AMD EPYC), and meta_init, "
                f"gradients, verify and the fine-tunes with it. {fix}")
    if dtype == "bfloat16" and cpu_has_bfloat16() is False:
        arch = platform.machine() or "this"
        return (f"bfloat16, but {where}, and this {arch} CPU has no bfloat16 instructions (AVX512-BF16 "
                f"or AMX): its matrix products are converted in software and take longer than in float32, "
                f"and the model stages with them. {fix}")
    return None

"""Speed options of ``train`` and ``eval``: CPU threads (``--threads``) and mixed precision (``--amp``).

``--amp`` autocasts the forward pass to float16 on CUDA (with a gradient scaler, as before)
and to bfloat16 on a CPU whose oneDNN kernels support it (AVX-512 BF16 or AMX; bfloat16 has
float32's range, so no scaler); elsewhere it says so in one line and runs in float32.
The measurements behind the README's advice: ``benchmarks/amp_speed.py`` and
``benchmarks/threads_speed.py``.
"""

from __future__ import annotations

import contextlib

import torch

MAX_THREADS = 256  # 100,000 threads crash OpenBLAS (a segmentation fault, no message); 512 run


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads to ``threads`` (None: leave torch's default, one per
    core); returns the number in use."""
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            from ..errors import UsageError

            raise UsageError(f"{{threads}} {threads}: must be from 1 to {MAX_THREADS}", "threads")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions and matrix products natively (oneDNN's
    test: AVX-512 with BF16, or AMX); without it bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def amp_dtype(device: torch.device, amp: bool, warn=print) -> torch.dtype | None:
    """The autocast type for ``--amp`` on ``device`` (None: float32): float16 on CUDA,
    bfloat16 on a CPU that supports it; otherwise one line through ``warn`` and None."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        if cpu_supports_bf16():
            return torch.bfloat16
        warn("note: --amp: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so the run stays in float32")
        return None
    warn(f"note: --amp: no mixed precision on {device.type}, so the run stays in float32")
    return None


def precision(dtype: torch.dtype | None) -> dict:
    """The anytime table's ``precision`` field: ``float32``, ``bfloat16`` or ``float16``."""
    return {"precision": str(dtype or torch.float32).removeprefix("torch.")}


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None:
    the type :func:`amp_dtype` chose, never ``--amp``'s flag itself (a bool is refused, so a
    caller that passes the flag fails here instead of running in float32 unnoticed)."""
    if dtype is None:
        return contextlib.nullcontext()
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"autocast takes a torch.dtype or None (from amp_dtype), not {dtype!r}")
    return torch.autocast(device.type, dtype=dtype)

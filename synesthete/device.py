"""Pick the compute device: MPS, then CUDA, then CPU, unless one is named explicitly."""

from __future__ import annotations

import contextlib
import functools
import platform
import time
from collections.abc import Callable

import torch

from synesthete.errors import DeviceError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device for ``name`` ('auto', 'cpu', 'cuda', 'cuda:N', 'mps'); explicit but absent is an error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if _mps_available():
            return torch.device("mps")
        if _cuda_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not _cuda_available():
            raise DeviceError(f"device '{name}' was requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device '{name}' was requested but only {torch.cuda.device_count()} GPU(s) exist")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device '{name}' was requested but MPS is not available on this machine")
        return device
    raise DeviceError(f"unsupported device '{name}': use auto, cpu, cuda, cuda:N or mps")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in Linux's /proc/cpuinfo ("model name", "flags", ...; empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():  # the first processor's block ends here
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    return frozenset(_cpuinfo().get("flags", "").split())


SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_features() -> dict[str, object]:
    """What the CPU offers for the networks' speed (benchmarks report it beside their figures): its model
    name, which of ``SPEED_FLAGS`` it has, and whether bf16 runs natively on it (``native_bf16``)."""
    model = _cpuinfo().get("model name") or platform.processor() or platform.machine()
    flags = _cpu_flags()
    return {"model": model, "flags": [f for f in SPEED_FLAGS if f in flags],
            "native_bf16": native_bf16(torch.device("cpu"))}


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matrix products run in hardware: CUDA GPUs that support bf16, and x86 CPUs with
    AVX512-BF16 or AMX (there oneDNN runs a bf16 matmul several times faster than float32). Elsewhere (older CPUs,
    Apple Silicon's CPU, MPS) bf16 is emulated or untested, so float32 stays."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    return False


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (GPUs run asynchronously; a CPU needs nothing): call it before
    reading a clock around device work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn``, each timed from an idle ``device`` until its work
    is done (``synchronize``): what the benchmarks report, as the machine may be shared."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def precision(device: torch.device, amp: bool = True) -> str:
    """"bf16" where ``amp`` is on and the device has native bf16 (``native_bf16``), else "float32": what
    ``autocast(device, amp)`` runs the networks in (summaries report it)."""
    return "bf16" if amp and native_bf16(device) else "float32"


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast where ``precision(device, enabled)`` is "bf16"; a no-op context elsewhere.

    Weights, optimiser state and everything outside the network stay float32; inside, matrix products and
    convolutions run in bf16 and precision-sensitive ops (norms, softmax, reductions) in float32."""
    if precision(device, enabled) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

"""Pick the compute device: MPS, then CUDA, then CPU, unless one is named explicitly."""

from __future__ import annotations

import contextlib

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


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

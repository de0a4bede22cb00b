"""Device helper: MPS, then CUDA, then CPU; explicit but absent devices are errors."""

from __future__ import annotations

import pytest
import torch

from synesthete import device as dev
from synesthete.errors import DeviceError


@pytest.mark.parametrize(
    ("mps", "cuda", "expected"),
    [(True, True, "mps"), (False, True, "cuda"), (True, False, "mps"), (False, False, "cpu")],
)
def test_auto_order(monkeypatch, mps, cuda, expected):
    monkeypatch.setattr(dev, "_mps_available", lambda: mps)
    monkeypatch.setattr(dev, "_cuda_available", lambda: cuda)
    assert dev.resolve_device("auto").type == expected


def test_explicit_cpu_always_works():
    assert dev.resolve_device("cpu") == torch.device("cpu")


def test_explicit_unavailable_is_an_error(monkeypatch):
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    monkeypatch.setattr(dev, "_cuda_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        dev.resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        dev.resolve_device("mps")
    with pytest.raises(DeviceError, match="unknown device"):
        dev.resolve_device("tpu7")


def test_autocast_is_noop_on_cpu():
    with dev.autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32

"""Device helper: MPS, then CUDA, then CPU; explicit but absent devices are errors."""

from __future__ import annotations

import platform
import sys

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


@pytest.mark.parametrize(
    ("flags", "enabled", "expected"),
    [({"avx512_bf16"}, True, torch.bfloat16), ({"amx_bf16"}, True, torch.bfloat16),
     ({"avx512_bf16"}, False, torch.float32), ({"avx2", "avx512f"}, True, torch.float32)],
)
def test_cpu_autocast_only_with_native_bf16(monkeypatch, flags, enabled, expected):
    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset(flags))
    a = torch.randn(4, 8)
    with dev.autocast(torch.device("cpu"), enabled):
        y = a @ torch.randn(8, 3)
        z = a + 1  # elementwise ops on float32 stay float32
    assert y.dtype == expected
    assert z.dtype == torch.float32
    assert dev.native_bf16(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert dev.precision(torch.device("cpu"), enabled) == ("bf16" if expected == torch.bfloat16 else "float32")


def test_the_suite_runs_float32_whatever_the_cpu(monkeypatch):
    """conftest's FLOAT32: on a CPU with native bf16 the suite still trains and renders in float32 (in process
    and in the CLI's subprocesses), so its numbers do not depend on the machine; the bf16 path is tested by
    mocking the flags, as here and in test_train.py."""
    from conftest import cli_env

    from synesthete.settings import load_settings

    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    cpu = torch.device("cpu")
    s = load_settings()
    assert dev.precision(cpu, s.train.amp) == dev.precision(cpu, s.render.amp) == "float32"
    assert cli_env()["SYNESTHETE_TRAIN__AMP"] == cli_env()["SYNESTHETE_RENDER__AMP"] == "false"
    assert dev.precision(cpu, s.updated(train={"amp": True}).train.amp) == "bf16"  # the path itself is there


def test_native_bf16_is_off_for_mps_and_absent_cuda(monkeypatch):
    assert not dev.native_bf16(torch.device("mps"))
    if not torch.cuda.is_available():
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
        assert not dev.native_bf16(torch.device("cuda"))


def test_cpu_flags_are_read_from_this_machine():
    flags = dev._cpu_flags()
    assert isinstance(flags, frozenset)
    if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in flags  # every x86-64 CPU has it


@pytest.mark.parametrize(("flags", "amp"), [({"avx512_bf16"}, True), ({"avx512_bf16"}, False), ({"avx2"}, True)])
def test_loaded_dit_is_bf16_exactly_where_render_runs_it_under_autocast(monkeypatch, tmp_path, flags, amp):
    """load_models stores the DiT in bf16 only where render.amp and native bf16 make render use bf16 autocast;
    either way a window renders, finite, in float32."""
    from conftest import tiny_checkpoints

    from synesthete.checkpoint import load_models
    from synesthete.render import generate_frames
    from synesthete.settings import load_settings

    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset(flags))
    s = load_settings("tiny").updated(render={"amp": amp, "exemplar": False}, device="cpu")
    models = load_models(s, tiny_checkpoints(tmp_path), "cpu")
    bf16 = dev.precision(torch.device("cpu"), amp) == "bf16"
    assert {p.dtype for p in models.dit.parameters()} == {torch.bfloat16 if bf16 else torch.float32}
    assert {p.dtype for p in models.vae.parameters()} == {torch.float32}
    frames = generate_frames(models, torch.randn(s.audio.sample_rate // 2) * 0.1, models.fitted(s))
    assert frames.shape[0] == s.video.fps // 2 and torch.isfinite(frames.float()).all()
    # sample() outside any autocast: bf16 weights bring their own autocast; the latents come out float32.
    from synesthete.audio.features import num_features
    from synesthete.sampling import sample

    d = s.dit
    shape = (1, d.window, s.vae.latent_channels, s.latent_size, s.latent_size)
    features = torch.rand(1, d.window + 2 * d.audio_context, num_features(s.audio))
    latents = sample(models.dit, features, shape, s.sampling, steps=2)
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()


def test_cpu_features_name_the_speed_flags_and_native_bf16(monkeypatch):
    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset({"avx2", "fma", "avx512_bf16", "sse4_2"}))
    features = dev.cpu_features()
    assert features["flags"] == ["avx2", "fma", "avx512_bf16"] and features["native_bf16"] is True
    assert isinstance(features["model"], str) and features["model"]
    monkeypatch.setattr(dev, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert dev.cpu_features()["native_bf16"] is False

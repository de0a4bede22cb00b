"""render.engine: ONNX Runtime runs the DiT's forward on the CPU, with eager PyTorch's frames and its fallback."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import ROOT, assert_user_error, counting, render, tiny_checkpoints

from synesthete import engine
from synesthete.checkpoint import load_models
from synesthete.errors import ConfigError
from synesthete.settings import load_settings

TOLERANCE = 2  # uint8 levels: the largest difference of a 1 s render's frames, eager against ONNX Runtime
MEAN_TOLERANCE = 0.01  # uint8 levels, over every pixel of every frame


@pytest.fixture
def no_onnxruntime(monkeypatch):
    """ONNX Runtime is not installed (as on a machine without the onnx extra)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


@pytest.mark.slow
def test_onnxruntime_renders_the_eager_frames_and_exports_once(tmp_path, monkeypatch):
    """A 1 s render of the shipped checkpoints: every sampler pass in the session, frames within TOLERANCE."""
    from synesthete import Synesthete

    monkeypatch.setenv("SYNESTHETE_PATHS__CACHE", str(tmp_path))
    song = ROOT / "examples" / "drums_112bpm.wav"
    frames, said = {}, []
    monkeypatch.setattr(engine, "export", counting(engine.export, said))
    for name in ("eager", "onnxruntime", "onnxruntime"):
        pipe = Synesthete.from_pretrained(device="cpu", render={"engine": name})
        result = pipe.render(song, duration=1.0, seed=3, sections=False, style="pulse")
        assert pipe.models.engine == result.engine == name
        if name == "onnxruntime":
            # Every pass of every window ran in the session: steps x batched samples of the lanes and bridges.
            assert pipe.models.dit.calls >= result.steps
        frames[name] = result.frames.float()
    assert len(said) == 1  # the second load found the export in the cache
    assert len(list((tmp_path / "onnx").glob("dit-*.onnx"))) == 1
    diff = (frames["eager"] - frames["onnxruntime"]).abs()
    assert frames["eager"].shape == frames["onnxruntime"].shape
    assert diff.max() <= TOLERANCE and diff.mean() <= MEAN_TOLERANCE


def test_auto_runs_eager_where_onnxruntime_is_missing(no_onnxruntime, tiny, tmp_path):
    cpu = torch.device("cpu")
    assert "onnxruntime" in engine.missing_packages()
    assert engine.choose("auto", cpu, "float32") == "eager"
    ckpt = tiny_checkpoints(tmp_path / "ckpt")
    models = load_models(tiny, ckpt, "cpu")  # render.engine auto
    assert models.engine == "eager" and isinstance(models.dit, torch.nn.Module) and not hasattr(models.dit, "session")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ConfigError, match="needs onnxruntime: install it with `uv sync --extra onnx`"):
        engine.choose("onnxruntime", cpu, "float32")


def test_auto_picks_onnxruntime_on_the_cpu_float32_path_only():
    if engine.missing_packages():
        pytest.skip("ONNX Runtime is not installed (the onnx extra)")
    cpu = torch.device("cpu")
    assert engine.choose("auto", cpu, "float32") == "onnxruntime"
    assert engine.choose("auto", cpu, "bf16") == "eager"  # native bf16: the eager bf16 path is the fast one
    assert engine.choose("auto", torch.device("cuda"), "float32") == "eager"
    assert engine.choose("eager", cpu, "float32") == "eager"
    with pytest.raises(ConfigError, match="CPU only"):
        engine.choose("onnxruntime", torch.device("mps"), "float32")
    with pytest.raises(ConfigError, match="float32 path"):
        engine.choose("onnxruntime", cpu, "bf16")


def test_a_broken_cached_graph_is_exported_again(tiny, tmp_path, monkeypatch):
    if engine.missing_packages():
        pytest.skip("ONNX Runtime is not installed (the onnx extra)")
    ckpt = _busy_tiny_checkpoints(tmp_path / "ckpt")
    settings = tiny.updated(render={"engine": "onnxruntime"}, paths={"cache": tmp_path / "cache"})
    graph = engine.graph_path(ckpt / "diffusion.pt", tmp_path / "cache")
    graph.parent.mkdir(parents=True)
    graph.write_bytes(b"not an onnx graph")
    models = load_models(settings, ckpt, "cpu")
    assert models.engine == "onnxruntime" and graph.stat().st_size > 1000
    # The session gives the eager DiT's output on the sampler's inputs, at any batch size.
    dit = models.dit.dit
    for batch in (1, 3):
        inputs = engine.example_inputs(dit, batch)
        x, t, vector, tokens, style, drop_style, mask, context_t = inputs[:8]
        with torch.no_grad():
            want = engine._Forward(dit)(*inputs)
            got = models.dit(x, t, audio=_condition(vector, tokens), style=style, drop_style=drop_style,
                             context_mask=mask, context_t=context_t, guidance=inputs[8] if len(inputs) > 8 else None)
        assert want.abs().max() > 0.1  # a network that computes something
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert models.dit.calls == 2


def test_a_cached_graph_loads_without_the_onnx_package(tiny, tmp_path, monkeypatch):
    """Only an export needs the onnx package; a session on a graph found in the cache never imports it (the
    import alone took 1.4-2 s of every render's set-up)."""
    if engine.missing_packages():
        pytest.skip("ONNX Runtime is not installed (the onnx extra)")
    ckpt = tiny_checkpoints(tmp_path / "ckpt")
    settings = tiny.updated(render={"engine": "onnxruntime"}, paths={"cache": tmp_path / "cache"})
    dit = load_models(settings, ckpt, "cpu").dit.dit  # exports into the cache
    graph = engine.graph_path(ckpt / "diffusion.pt", tmp_path / "cache")
    exported = graph.stat().st_mtime_ns
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` fails from here on
    session = engine.session_for(dit, ckpt / "diffusion.pt", tmp_path / "cache")
    assert isinstance(session, engine.OnnxDiT)
    assert graph.stat().st_mtime_ns == exported  # read from the cache, not exported again


def _busy_tiny_checkpoints(folder):
    """Tiny checkpoints whose DiT has every weight random (a new DiT's adaLN-Zero layers output zeros)."""
    from synesthete.checkpoint import load_checkpoint, save_checkpoint

    tiny_checkpoints(folder)
    ckpt = load_checkpoint(folder / "diffusion.pt", "diffusion")
    generator = torch.Generator().manual_seed(1)
    for key in ("model", "ema"):
        for name, value in (ckpt.get(key) or {}).items():
            if value.is_floating_point():
                ckpt[key][name] = value + 0.05 * torch.randn(value.shape, generator=generator)
    save_checkpoint(ckpt, folder / "diffusion.pt")
    return folder


def _condition(vector, tokens):
    from synesthete.models.dit import AudioCondition

    return AudioCondition(vector, tokens)


def test_render_engine_onnxruntime_without_it_is_one_line(no_onnxruntime, tmp_path):
    ckpt = tiny_checkpoints(tmp_path / "ckpt")
    proc = render(ckpt, str(ROOT / "examples" / "drums_112bpm.wav"), "-o", str(tmp_path / "out.mp4"),
                  env={"SYNESTHETE_RENDER__ENGINE": "onnxruntime"})
    assert_user_error(proc, "render.engine onnxruntime needs onnxruntime")
    assert not (tmp_path / "out.mp4").exists()


def test_settings_refuse_an_unknown_engine():
    with pytest.raises(Exception, match="engine"):
        load_settings().updated(render={"engine": "tensorrt"})

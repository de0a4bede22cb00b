"""Checkpoints: safe loading, architecture checks, tampered and non-finite files, atomic writes, export and
load_models, and where the shipped checkpoints are found (any folder, an installed package)."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_user_error, call_cli, render, run_cli, summary_rows

from synesthete.checkpoint import (
    export_checkpoint,
    load_checkpoint,
    load_models,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
    vae_fingerprint,
)
from synesthete.errors import CheckpointError
from synesthete.media import load_audio, load_video, write_wav
from synesthete.models.dit import DiT
from synesthete.models.vae import VAE
from synesthete.settings import load_settings


@pytest.fixture(scope="module")
def tiny():
    return load_settings("tiny")


def _vae_run_checkpoint(settings, step: int = 7) -> dict:
    torch.manual_seed(0)
    model = VAE.from_settings(settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, settings.video.height, settings.video.width))[0].mean().backward()
    optimizer.step()
    return make_checkpoint("vae", model, settings, optimizer=optimizer.state_dict(), step=step, data_position=3)


def _dit_run_checkpoint(settings, vae_state: dict) -> dict:
    torch.manual_seed(1)
    model = DiT.from_settings(settings)
    ema = DiT.from_settings(settings)
    for p in ema.parameters():
        torch.nn.init.normal_(p)  # distinguishable from the raw weights
    c = settings.vae.latent_channels
    return make_checkpoint(
        "diffusion", model, settings, ema=ema.state_dict(), optimizer={"state": {}, "param_groups": []}, step=5,
        latent_stats={"mean": torch.arange(c).float(), "std": torch.ones(c) * 2},
        vae_fingerprint=vae_fingerprint(vae_state),
    )


def test_round_trip_keeps_weights_settings_and_plain_types(tiny, tmp_path):
    ckpt = _vae_run_checkpoint(tiny)
    path = save_checkpoint(ckpt, tmp_path / "vae.pt")
    loaded = load_checkpoint(path, "vae", tiny)
    assert loaded["step"] == 7 and loaded["data_position"] == 3
    assert loaded["settings"] == tiny.model_dump(mode="json")
    assert all(isinstance(v, str) for v in loaded["versions"].values())
    for key, value in ckpt["model"].items():
        assert torch.equal(loaded["model"][key], value)
    assert loaded["optimizer"]["state"], "optimizer state is saved"


def test_architecture_mismatch_names_the_field(tiny, tmp_path):
    path = save_checkpoint(_vae_run_checkpoint(tiny), tmp_path / "vae.pt")
    wider = tiny.updated(vae={"latent_channels": 8})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, "vae", wider)
    message = str(info.value)
    assert f"{path} was trained with latent_channels=4, the current settings give 8" in message
    assert "\n" not in message
    # A field that does not shape the network (the learning rate) is not a mismatch.
    load_checkpoint(path, "vae", tiny.updated(vae={"lr": 0.5}))
    with pytest.raises(CheckpointError, match="is a vae checkpoint, expected a diffusion checkpoint"):
        load_checkpoint(path, "diffusion", tiny)


class _Payload:
    """Pickles as a call to os.system: loading it with plain pickle would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tiny, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "synesthete-checkpoint", "version": 1, "kind": "vae", "model": _Payload(marker)}, evil)
    refused = r"refusing to load .*evil\.pt: not a plain checkpoint \(it may contain code\)"
    with pytest.raises(CheckpointError, match=refused):
        load_checkpoint(evil, "vae", tiny)
    assert not marker.exists()

    raw = tmp_path / "raw.pkl"  # a bare pickle, not even a torch archive
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        read_checkpoint(raw)
    assert not marker.exists()

    # Control: the payload is real, a trusting loader does run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_foreign_and_missing_files_are_refused(tiny, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        read_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="is not a Synesthete checkpoint"):
        read_checkpoint(other)
    truncated = tmp_path / "truncated.pt"
    good = save_checkpoint(_vae_run_checkpoint(tiny), tmp_path / "good.pt")
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        read_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")


_WRITER = """
import sys, torch
from synesthete.checkpoint import save_checkpoint
ckpt = {"format": "synesthete-checkpoint", "version": 1, "kind": "vae", "step": 2,
        "model": {"w": torch.ones(96 * 2**20)}}  # 384 MB: takes a while to write and fsync
print("ready", flush=True)
save_checkpoint(ckpt, sys.argv[1])
print("done", flush=True)
"""


@pytest.mark.slow
def test_killed_writer_leaves_previous_checkpoint_intact(tiny, tmp_path):
    path = tmp_path / "ckpt_latest.pt"
    save_checkpoint({"format": "synesthete-checkpoint", "version": 1, "kind": "vae", "step": 1,
                     "model": {"w": torch.zeros(4)}}, path)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    temp = []
    while time.monotonic() < deadline and not temp:
        temp = [p for p in tmp_path.glob(".ckpt_latest.*") if p.stat().st_size > 0]
    proc.send_signal(signal.SIGKILL)  # mid-write: the temporary file has started to fill
    proc.wait()
    assert temp, "the writer never started writing its temporary file"
    assert path.read_bytes() == before
    assert read_checkpoint(path)["step"] == 1


def test_export_is_compact_and_load_models_restores_float32_eval(tiny, tmp_path):
    vae_ckpt = _vae_run_checkpoint(tiny)
    dit_ckpt = _dit_run_checkpoint(tiny, vae_ckpt["model"])
    run = tmp_path / "run"
    save_checkpoint(vae_ckpt, run / "vae_run.pt")
    save_checkpoint(dit_ckpt, run / "dit_run.pt")
    out = tmp_path / "export"
    assert export_checkpoint(run / "vae_run.pt", out) == out / "vae.pt"
    assert export_checkpoint(run / "dit_run.pt", out) == out / "diffusion.pt"
    for name in ("vae", "diffusion"):
        exported = read_checkpoint(out / f"{name}.pt")
        assert "optimizer" not in exported and "ema" not in exported
        assert exported["config"] == read_checkpoint(run / f"{'dit' if name == 'diffusion' else name}_run.pt")["config"]
        assert all(v.dtype == torch.float16 for v in exported["model"].values() if v.is_floating_point())
    assert (out / "vae.pt").stat().st_size < (run / "vae_run.pt").stat().st_size / 2

    models = load_models(tiny.updated(render={"amp": False}), out, "cpu")  # bf16 storage: test_device.py
    assert not models.vae.training and not models.dit.training
    assert all(p.dtype == torch.float32 for p in models.dit.parameters())
    # The diffusion weights are the EMA, rounded to fp16.
    ema_value = dit_ckpt["ema"]["null_vector"]
    assert torch.equal(models.dit.null_vector, ema_value.half().float())
    assert torch.equal(models.latent_mean, torch.arange(tiny.vae.latent_channels).float())
    z = torch.randn(2, tiny.vae.latent_channels, tiny.latent_size, tiny.latent_size)
    assert models.vae.decode(z).shape == (2, 3, tiny.video.height, tiny.video.width)


def test_load_models_refuses_missing_and_mismatched_pairs(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="train vae"):
        load_models(tiny, tmp_path, "cpu")
    vae_ckpt = _vae_run_checkpoint(tiny)
    save_checkpoint(vae_ckpt, tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match="train diffusion"):
        load_models(tiny, tmp_path, "cpu")

    # A diffusion model trained on another VAE's latents (same shape) is refused.
    other_vae = dict(vae_ckpt["model"], **{"decoder.conv_in.bias": vae_ckpt["model"]["decoder.conv_in.bias"] + 1})
    save_checkpoint(_dit_run_checkpoint(tiny, other_vae), tmp_path / "diffusion.pt")
    with pytest.raises(CheckpointError, match="different VAE"):
        load_models(tiny, tmp_path, "cpu")

    # A diffusion model whose VAE had another latent width is refused before anything else.
    wide = tiny.updated(vae={"latent_channels": 8})
    save_checkpoint(_dit_run_checkpoint(wide, vae_ckpt["model"]), tmp_path / "diffusion.pt")
    with pytest.raises(CheckpointError, match=r"latents of shape \(8, 2, 2\), but .*vae.pt makes \(4, 2, 2\)"):
        load_models(tiny, tmp_path, "cpu")


def test_models_are_rebuilt_from_the_config_their_checkpoint_carries(tiny, tmp_path):
    """A checkpoint loads without the settings that trained it: render/eval at the default (cpu) preset read
    tiny checkpoints: the architecture is the DiT's config (Models.config), and Models.fitted gives the settings
    their frame size and audio analysis; nothing else of the settings changes."""
    vae_ckpt = _vae_run_checkpoint(tiny)
    dit_ckpt = _dit_run_checkpoint(tiny, vae_ckpt["model"])
    assert dit_ckpt["config"]["dim"] == tiny.dit.dim and vae_ckpt["config"]["width"] == tiny.video.width
    save_checkpoint(vae_ckpt, tmp_path / "vae.pt")
    save_checkpoint(dit_ckpt, tmp_path / "diffusion.pt")
    cpu = load_settings("cpu")
    assert (cpu.dit.dim, cpu.video.width) != (tiny.dit.dim, tiny.video.width)
    models = load_models(cpu, tmp_path, "cpu")
    assert models.dit.config.dim == tiny.dit.dim
    assert models.config.window == tiny.dit.window and models.config.latent_height == tiny.latent_size
    fitted = models.fitted(cpu)
    assert (fitted.video.width, fitted.audio) == (tiny.video.width, tiny.audio)
    assert (fitted.dit, fitted.sampling) == (cpu.dit, cpu.sampling)  # no architecture copied back
    # Files written before configs existed are rebuilt from the settings they store.
    del dit_ckpt["config"], vae_ckpt["config"]
    save_checkpoint(vae_ckpt, tmp_path / "vae.pt")
    save_checkpoint(dit_ckpt, tmp_path / "diffusion.pt")
    assert load_models(cpu, tmp_path, "cpu").dit.config.dim == tiny.dit.dim
    # The frame rate is part of what the model means: another one is refused in one line.
    with pytest.raises(CheckpointError, match="trained at 30 fps"):
        load_models(cpu.updated(video={"fps": 24}), tmp_path, "cpu")


def test_models_encode_and_decode_own_the_latent_scaling(tiny, tmp_path):
    vae_ckpt = _vae_run_checkpoint(tiny)
    save_checkpoint(vae_ckpt, tmp_path / "vae.pt")
    save_checkpoint(_dit_run_checkpoint(tiny, vae_ckpt["model"]), tmp_path / "diffusion.pt")
    models = load_models(tiny, tmp_path, "cpu")  # latent mean 0, 1, 2, ...; std 2
    frames = torch.rand(3, 3, tiny.video.height, tiny.video.width)
    mu, _ = models.vae.encode(frames)
    z = models.encode(frames)
    mean = torch.arange(tiny.vae.latent_channels).float().view(1, -1, 1, 1)
    assert torch.allclose(z * 2 + mean, mu, atol=1e-5)
    assert torch.allclose(models.encode((frames * 255).round().to(torch.uint8)), z, atol=0.05)
    out = models.decode(z)
    assert torch.allclose(out, models.vae.decode(mu).clamp(0, 1), atol=1e-5)


def test_retired_knobs_at_todays_value_still_load_and_other_values_are_refused(tiny, tmp_path):
    """Checkpoints whose config or stored settings carry a retired experiment knob (the teachers written before
    2026-12-02 say noise_correlation 0.0 in their config; here the shipped student, given that key) still load;
    the same files asking for another value are refused in one line, whether the knob is in the config, in the
    settings of a file without config, or in the settings a resumed run trains on."""
    from synesthete.checkpoint import build_model, checkpoint_config
    from synesthete.settings import default_checkpoint_dir

    shipped = default_checkpoint_dir() / "diffusion.pt"
    ckpt = read_checkpoint(shipped)
    ckpt["config"]["noise_correlation"] = 0.0  # a retired key, at today's value, as older files carry it
    assert "noise_correlation" not in checkpoint_config(ckpt, shipped).to_dict()
    build_model(ckpt, shipped)

    ckpt["config"]["noise_correlation"] = 0.5
    with pytest.raises(CheckpointError, match=r"^cannot use .*diffusion\.noise_correlation=0\.5 is a retired") as err:
        checkpoint_config(ckpt, shipped)
    assert "\n" not in str(err.value)
    del ckpt["config"]  # an older file: its network is built from the settings it stores
    ckpt["settings"]["diffusion"]["noise_correlation"] = 0.5
    with pytest.raises(CheckpointError, match="retired"):
        checkpoint_config(ckpt, shipped)

    # Resuming trains on as the stored settings say: a retired knob at another value is refused.
    vae_ckpt = _vae_run_checkpoint(tiny)
    run = _dit_run_checkpoint(tiny, vae_ckpt["model"])
    run["settings"]["diffusion"].update(guidance_low=0.0, loss_weighting="none", min_snr_gamma=3.0)
    save_checkpoint(run, tmp_path / "ckpt.pt")
    load_checkpoint(tmp_path / "ckpt.pt", "diffusion", tiny)
    run["settings"]["diffusion"]["loss_weighting"] = "min_snr"
    save_checkpoint(run, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"cannot resume .*diffusion\.loss_weighting='min_snr' is a retired"):
        load_checkpoint(tmp_path / "ckpt.pt", "diffusion", tiny)


def test_settings_stored_before_the_dit_and_sampling_sections_are_read_in_todays_layout(tmp_path):
    """Checkpoints store their run's whole settings; the shipped VAE and critic (and every run before 2026-12-01)
    have the DiT's architecture and sampling in the diffusion section. upgrade_stored moves them, so a network
    is rebuilt from old stored settings exactly as from its config (the shipped teacher's: the same
    architecture), and a resumed run keeps its sampling knobs."""
    from synesthete.checkpoint import checkpoint_config
    from synesthete.models.dit import DiTConfig
    from synesthete.settings import default_checkpoint_dir, upgrade_stored

    stored = read_checkpoint(default_checkpoint_dir() / "vae.pt")["settings"]  # written before the split
    path = default_checkpoint_dir() / "diffusion_teacher.pt"
    ckpt = read_checkpoint(path)
    assert "window" in stored["diffusion"] and "dit" not in stored  # the old layout
    new = upgrade_stored(stored)
    assert new["dit"]["window"] == stored["diffusion"]["window"] and "window" not in new["diffusion"]
    assert new["sampling"]["steps"] == stored["diffusion"]["sample_steps"]
    assert stored["diffusion"]["window"] == new["dit"]["window"]  # the stored dict itself is left as it was
    assert DiTConfig.from_settings(stored, (8, 8, 8)) == checkpoint_config(ckpt, path)


# --------------------------------------------------------------------------------------------- tampered files
@pytest.mark.parametrize(("field", "value", "message"), [
    ("dim", 100_000, "DiTConfig.dim=100000: must be in 1..4096"),
    ("depth", 10**6, "DiTConfig.depth=1000000: must be in 1..128"),
    ("dim", -8, "DiTConfig.dim=-8: must be in"),
    ("heads", "2", "DiTConfig.heads='2': must be an integer"),
    ("mlp_ratio", float("nan"), "must be a finite number"),
    ("schedule", "x" * 100_000, "must be one of cosine, linear"),
    ("depth", 100, "more than the 101,104 parameters the file holds"),  # within bounds, but not these weights
])
def test_tampered_checkpoint_config_is_refused_before_building(ckpt_dir, tmp_path, field, value, message):
    """3. A stored config asking for a huge network was built before any check: dim 100000 allocated 40 GB,
    depth 10^6 layers until the memory ran out, a negative dim gave a traceback."""
    from synesthete.checkpoint import load_models, read_checkpoint, save_checkpoint

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vae.pt").write_bytes((ckpt_dir / "vae.pt").read_bytes())
    ckpt = read_checkpoint(ckpt_dir / "diffusion.pt")
    ckpt["config"] = {**ckpt["config"], field: value}
    save_checkpoint(ckpt, bad / "diffusion.pt")
    with pytest.raises(CheckpointError, match="diffusion.pt") as info:
        load_models(load_settings("tiny"), bad, "cpu")
    assert message in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 400


def test_tampered_checkpoint_is_one_line_from_the_cli(ckpt_dir, song, tmp_path):
    from synesthete.checkpoint import read_checkpoint, save_checkpoint

    bad = tmp_path / "bad"
    bad.mkdir()
    ckpt = read_checkpoint(ckpt_dir / "vae.pt")
    ckpt["config"] = {**ckpt["config"], "base_channels": -1}
    save_checkpoint(ckpt, bad / "vae.pt")
    (bad / "diffusion.pt").write_bytes((ckpt_dir / "diffusion.pt").read_bytes())
    proc = render(bad, str(song), "-o", str(tmp_path / "out.mp4"))
    assert_user_error(proc, "vae.pt", "VAEConfig.base_channels=-1")


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf")], [float("-inf")], [float("inf"), float("-inf")]])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_one_non_finite_weight_is_found(bad, dtype):
    from synesthete.checkpoint import check_finite
    from synesthete.errors import CheckpointError

    weights = {"a": torch.full((300, 300), 60000.0 if dtype == torch.float16 else 3e38, dtype=dtype),
               "b": torch.zeros(1000, dtype=dtype), "steps": torch.tensor(5)}
    check_finite(weights, "ok.pt")  # large finite weights pass (3e38 x 90,000 overflows a float32 sum, not float64)
    weights["b"][: len(bad)] = torch.tensor(bad, dtype=dtype)
    with pytest.raises(CheckpointError, match="in b:"):
        check_finite(weights, "bad.pt")


def test_non_finite_checkpoint_weights_are_refused(ckpt_dir, song, tmp_path):
    from synesthete.checkpoint import load_models, read_checkpoint, save_checkpoint
    from synesthete.errors import CheckpointError
    from synesthete.settings import load_settings

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vae.pt").write_bytes((ckpt_dir / "vae.pt").read_bytes())
    ckpt = read_checkpoint(ckpt_dir / "diffusion.pt")
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name].clone().fill_(float("nan"))
    save_checkpoint(ckpt, bad / "diffusion.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_models(load_settings("tiny"), bad, "cpu")
    out = tmp_path / "out.mp4"
    assert_user_error(render(bad, str(song), "-o", str(out)), "non-finite weights", name)
    assert not out.exists()


def test_stale_temp_files_go_but_live_ones_stay(tmp_path):
    from synesthete.checkpoint import read_checkpoint, save_checkpoint

    path = tmp_path / "ckpt_latest.pt"
    stale = tmp_path / ".ckpt_latest.abcd1234.tmp.pt"  # a writer killed with -9 left it: nobody locks it
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / ".ckpt_latest.live5678.tmp.pt"  # a running writer holds its lock
    live.write_bytes(b"being written")
    other = tmp_path / ".other.abcd1234.tmp.pt"  # another file's temp is not ours to judge
    other.write_bytes(b"x")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        save_checkpoint({"format": "synesthete-checkpoint", "version": 1, "kind": "vae", "model": {}}, path)
    finally:
        os.close(fd)
    assert read_checkpoint(path)["kind"] == "vae"
    assert not stale.exists() and live.exists() and other.exists()


# --------------------------------------------------------------------------------------------- shipped checkpoints
@pytest.mark.slow
def test_shipped_checkpoints_are_found_from_any_folder(tmp_path):
    settings = load_settings()
    wave = torch.sin(torch.arange(16000) / 16000 * 2 * torch.pi * 220)[None] * 0.3
    wave[:, ::4000] = 0.9  # a few clicks
    write_wav(tmp_path / "song.wav", wave, settings.audio.sample_rate)
    proc = run_cli("render", "song.wav", "-o", "out.mp4", "--steps", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames, fps = load_video(tmp_path / "out.mp4")
    assert fps == 30 and abs(frames.shape[0] - 30) <= 1 and frames.float().std() > 1
    assert load_audio(tmp_path / "out.mp4")[0].shape[-1] > 0
    assert summary_rows(proc.stdout)["checkpoints"] == str(ROOT / "checkpoints")

    shown = json.loads(run_cli("config", "--json", cwd=tmp_path).stdout)
    assert shown["paths"]["checkpoints"] == str(ROOT / "checkpoints")
    assert shown["paths"]["critic"] is None  # critic.pt beside them

    # A relative folder the user names stays relative to where the command runs.
    (tmp_path / "mine").mkdir()
    proc = call_cli("render", "song.wav", "-o", "other.mp4", "--checkpoint-dir", "mine", cwd=tmp_path)
    assert_user_error(proc, "mine/vae.pt")
    assert str(ROOT) not in proc.stderr
    proc = call_cli("config", "--json", cwd=tmp_path, env={"SYNESTHETE_PATHS__CHECKPOINTS": "mine"})
    assert json.loads(proc.stdout)["paths"]["checkpoints"] == "mine"


def test_an_installed_package_reads_the_checkpoints_it_carries(tmp_path):
    """The wheel puts checkpoints/*.pt into synesthete/checkpoints/ (pyproject force-include); a package laid
    out that way finds them there, from any working directory."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for pt in sorted((ROOT / "checkpoints").glob("*.pt")):
        assert shipped[f"checkpoints/{pt.name}"] == f"synesthete/checkpoints/{pt.name}"

    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "synesthete", site / "synesthete", ignore=shutil.ignore_patterns("__pycache__"))
    for source, target in shipped.items():
        (site / target).parent.mkdir(parents=True, exist_ok=True)
        (site / target).symlink_to(ROOT / source)
    code = "from synesthete.settings import load_settings; print(load_settings().paths.checkpoints)"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "SYNESTHETE_ENV_FILE": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(site / "synesthete" / "checkpoints")

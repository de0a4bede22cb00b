"""Styles: parsing, render --style, style conditioning that a critic can see, warm starts."""

from __future__ import annotations

import pytest
import torch

from synesthete import media
from synesthete.errors import InputError
from synesthete.settings import load_settings
from synesthete.styles import families, parse_style, resolve_style, style_name, style_vector
from tests.conftest import ROOT, assert_user_error, run_cli

SONG = ROOT / "examples" / "drums_112bpm.wav"
TWO = ["spectrum", "kaleido"]  # two visually distinct families: bars on a dark ground, full-frame interference


def test_style_names():
    assert parse_style("kaleido+Spectrum") == ["spectrum", "kaleido"]  # registry order, case-insensitive
    assert style_name(["kaleido", "spectrum"]) == "spectrum+kaleido"
    assert style_vector(["spectrum", "kaleido"]).tolist() == [float(f in TWO) for f in families()]
    assert resolve_style("auto", 3) == resolve_style("auto", 3)
    assert {resolve_style("auto", seed)[0] for seed in range(40)} == set(families())  # auto reaches every family
    for bad in ("rings", "spectrum+", "spectrum+nope", ""):
        with pytest.raises(InputError, match="unknown style"):
            parse_style(bad)


def test_style_cli_errors_and_list():
    proc = run_cli("render", str(SONG), "-o", "/tmp/never.mp4", "--style", "blobs")
    assert_user_error(proc, "unknown style 'blobs'", ", ".join(families()))
    for args in (("styles",), ("render", str(SONG), "-o", "/tmp/never.mp4", "--style", "list")):
        listed = run_cli(*args)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert all(name in listed.stdout for name in families())
    assert not (ROOT / "never.mp4").exists()


@pytest.fixture(scope="module")
def two_style_models(tmp_path_factory):
    """A tiny VAE, DiT and critic trained for seconds on two families only (spectrum, kaleido)."""
    from synesthete.train.critic import train_critic
    from synesthete.train.diffusion import train_diffusion
    from synesthete.train.vae import train_vae

    root = tmp_path_factory.mktemp("two_styles")
    common = {"data": {"visualizers": TWO, "compose_prob": 0.0}, "paths": {"runs": root / "runs"}}
    settings = load_settings("tiny", **common, vae={"max_steps": 80}, critic={"max_steps": 60, "junk_prob": 0.0},
                             diffusion={"max_steps": 120, "batch_size": 8}, train={"image_every": 1000})
    train_vae(settings.updated(train={"run_name": "vae"}), export=root)
    train_critic(settings.updated(train={"run_name": "critic"}), export=root)
    train_diffusion(settings.updated(train={"run_name": "dit"}), vae_path=root / "vae.pt", export=root)
    return settings, root


def test_tiny_model_conditioned_on_two_styles_paints_what_the_critic_tells_apart(two_style_models):
    from synesthete.audio.synth import synthesize
    from synesthete.checkpoint import load_models
    from synesthete.metrics.picture import load_critic
    from synesthete.render import generate_frames
    from synesthete.train.critic import critic_outputs

    settings, root = two_style_models
    models = load_models(settings, root, "cpu")
    critic, _ = load_critic(root / "critic.pt")
    wave, _ = synthesize(5, settings, duration=2.0, drums=True)
    index = {name: families().index(name) for name in TWO}
    correct = []
    for name in TWO:
        frames = generate_frames(models, wave, settings, style=[name])
        probs = critic_outputs(critic, frames)[0][:, list(index.values())]  # [T, 2]
        correct.append(float((probs.argmax(1) == TWO.index(name)).float().mean()))
    assert min(correct) >= 0.7, correct


def test_render_with_style_and_seed_is_deterministic(two_style_models, tmp_path):
    _, root = two_style_models
    outs = []
    for i in range(2):
        out = tmp_path / f"r{i}.mp4"
        proc = run_cli("render", str(SONG), "-o", str(out), "--preset", "tiny", "--checkpoint-dir", str(root),
                       "--duration", "1.5", "--style", "kaleido", "--seed", "4")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "kaleido" in proc.stdout
        outs.append(media.load_video(out)[0])
    assert torch.equal(outs[0], outs[1])


def test_warm_start_keeps_old_weights_and_zero_initialises_new_conditioning():
    from synesthete.checkpoint import warm_start
    from synesthete.errors import CheckpointError
    from synesthete.models import DiT

    settings = load_settings("tiny")
    old = DiT(settings)
    state = {k: v for k, v in old.state_dict().items() if k not in ("style_embed.weight", "context_embed")}
    fresh = DiT(settings)
    kept = warm_start(fresh, state, "old.pt")
    assert kept == ["context_embed", "style_embed.weight"]
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    assert fresh.style_embed.weight.abs().sum() == 0 and fresh.context_embed.abs().sum() == 0
    bigger = DiT(load_settings("tiny", diffusion={"dim": 64}))
    with pytest.raises(CheckpointError, match="does not fit"):
        warm_start(bigger, state, "old.pt")

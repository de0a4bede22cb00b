"""Options checked before any work: seeds, sizes, frame rates, finite numbers; one line from the CLI (render,
train, gen-audio), the project's own InputError from the API, and no output or run folder left behind.

Renders use tiny random-weight checkpoints (conftest's ``ckpt_dir``), through the real CLI in this process.
"""

from __future__ import annotations

import pytest
from conftest import assert_user_error, call_cli, render

from synesthete.errors import InputError


def test_seeds_past_64_bits_are_one_line(ckpt_dir, song, pipe, tmp_path):
    """4. `--seed 2**64` overflowed gen.manual_seed: a traceback from the CLI and the API."""
    huge = str(2**64)
    assert_user_error(render(ckpt_dir, str(song), "-o", str(tmp_path / "x.mp4"), "--seed", huge), "render.seed")
    env = {"SYNESTHETE_PATHS__RUNS": str(tmp_path / "runs")}
    assert_user_error(call_cli("train", "vae", "--preset", "tiny", "--seed", huge, env=env), "train.seed")
    assert_user_error(call_cli("gen-audio", "-n", "1", "-o", str(tmp_path / "d"), "--seed", huge), "data.seed")
    with pytest.raises(InputError, match=r"^invalid option: seed: Input should be less than or equal to"):
        pipe.render(song, seed=2**64)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists()
    assert pipe.render(song, seed=2**63 - 1, duration=0.2).frames.shape[0] == 6  # the largest seed works


def test_size_is_bounded(ckpt_dir, song, pipe, tmp_path):
    """6. `render(size=100000)` to memory tried to allocate 720 GB; `--size 100000` got a raw encoder error."""
    with pytest.raises(InputError, match="^invalid option: size: Input should be less than or equal to 4096$"):
        pipe.render(song, size=100_000)
    assert_user_error(render(ckpt_dir, str(song), "-o", str(tmp_path / "x.mp4"), "--size", "100000"),
                      "render.size", "4096")
    assert not (tmp_path / "x.mp4").exists()


def test_render_options_are_validated_before_work(song, tmp_path):
    from pydantic import ValidationError

    from synesthete.errors import InputError
    from synesthete.render import render_song
    from synesthete.settings import load_settings

    out = tmp_path / "out.mp4"
    assert_user_error(call_cli("render", str(song), "-o", str(out), "--duration", "nan"), "--duration", "finite")
    proc = call_cli("render", str(song), "-o", str(out), "--steps", "5000")  # cpu preset: 1000 timesteps
    assert_user_error(proc, "sampling.steps")
    assert "generating" not in proc.stderr and "rendering" not in proc.stderr  # no progress bar started
    assert_user_error(call_cli("render", str(song), "-o", str(out), "--guidance", "1e30"), "guidance")
    settings = load_settings()
    for bad in ({"start": float("inf")}, {"start": float("nan")}, {"duration": float("inf")}):
        with pytest.raises(InputError, match="finite"):
            render_song(settings, song, out, **bad)
    for guidance in (float("inf"), float("nan"), -1.0, 21.0):
        with pytest.raises(ValidationError, match="guidance"):
            load_settings(sampling={"guidance": guidance})
    assert not out.exists()


def test_other_fps_is_refused_with_a_clear_line(ckpt_dir, song, tmp_path):
    out = tmp_path / "out.mp4"
    for fps in ("60", "7"):
        assert_user_error(render(ckpt_dir, str(song), "-o", str(out), "--fps", fps), "30 fps", "--fps 30")
    assert_user_error(render(ckpt_dir, str(song), "-o", str(out), "--fps", "1000"), "video.fps")
    assert not out.exists()

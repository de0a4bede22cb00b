"""Jobs stopped or racing: real CLI processes signalled (Ctrl-C, SIGTERM, kill -9, a dying decoder) or started
twice on one output or run folder. One line says what stopped and what was done; finished files stay, nothing
half-written does.

Each test starts ``python -m synesthete`` in a process of its own (conftest's ``popen_cli``), seconds of CPU:
all are slow. Renders use tiny random-weight checkpoints (conftest's ``ckpt_dir``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import TINY, assert_user_error, call_cli, render, running_cli, temps, tone, wait_for

from synesthete.media import write_wav


# --------------------------------------------------------------------------------------------- render
def _long_song(folder: Path, seconds: float = 120.0) -> Path:
    path = folder / "long.wav"
    write_wav(path, tone(seconds, freq=330.0, amp=0.2), 16000)
    return path


@pytest.mark.slow
def test_render_lock_then_sigterm_cleans_up(ckpt_dir, tmp_path):
    long = _long_song(tmp_path)
    out = tmp_path / "long.mp4"
    args = ("render", str(long), "-o", str(out), "--preset", "tiny", "--steps", "100",
            "--checkpoint-dir", str(ckpt_dir))
    with running_cli(*args) as first:
        wait_for(lambda: bool(list(tmp_path.glob(".long.*.tmp.mp4"))), first, "the temporary mp4")
        # A second render to the same output, even with --overwrite, is refused while the first runs.
        second = call_cli(*args, "--overwrite")
        assert_user_error(second, "in use by another synesthete job")
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr
    assert "Traceback" not in stdout + stderr
    assert "terminated (SIGTERM)" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]  # no output, temp file or lock file


@pytest.mark.slow
def test_stale_temp_from_kill_9_is_removed_by_next_render(ckpt_dir, song, tmp_path):
    long = _long_song(tmp_path)
    out = tmp_path / "long.mp4"
    with running_cli("render", str(long), "-o", str(out), "--preset", "tiny", "--steps", "100",
                     "--checkpoint-dir", str(ckpt_dir)) as proc:
        wait_for(lambda: bool(list(tmp_path.glob(".long.*.tmp.mp4"))), proc, "the temporary mp4")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert list(tmp_path.glob(".long.*.tmp.mp4")), "kill -9 leaves the temporary file behind"
    proc = render(ckpt_dir, str(song), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "long.wav"]


@pytest.mark.slow
def test_render_whose_decoder_dies_fails_and_leaves_no_video(ckpt_dir, tmp_path):
    """2. The issue's reproduction: SIGINT to the process group of a render started with SIGINT ignored. Only
    the FFmpeg child dies; the last part of the song was silent, with exit 0."""
    path = tmp_path / "long.wav"
    write_wav(path, tone(60.0), 16000)
    out = tmp_path / "out.mp4"
    # FFmpeg, blocked on a full pipe, exits once the render reads on: a render that goes on makes it read soon.
    with running_cli("render", str(path), "-o", str(out), *TINY, "--checkpoint-dir", str(ckpt_dir),
                     sigint=False) as proc:
        # Encoded video in the temporary mp4: FFmpeg has been decoding for a while (a signal before it set up its
        # handler would find SIGINT ignored, as the render it inherits from has it).
        wait_for(lambda: any(p.stat().st_size > 20_000 for p in tmp_path.glob(".out.*.tmp.mp4")), proc,
                 "the first seconds of video")
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr
    assert "Traceback" not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert errors[-1].startswith(f"error: {path}: the audio decoder (FFmpeg) failed at"), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]  # no video, no temporary file


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_batch_says_what_it_rendered_and_what_not(ckpt_dir, tmp_path, signum):
    """8. Ctrl-C exited 130 with no line at all; SIGTERM said nothing of the songs that finished."""
    first, long, last = tmp_path / "first.wav", tmp_path / "long.wav", tmp_path / "last.wav"
    write_wav(first, tone(0.5), 16000)
    write_wav(long, tone(120.0), 16000)
    write_wav(last, tone(0.5), 16000)
    out = tmp_path / "out"
    with running_cli("render", str(first), str(long), str(last), "-o", str(out), "--preset", "tiny",
                     "--steps", "100", "--checkpoint-dir", str(ckpt_dir)) as proc:
        wait_for(lambda: (out / "first.mp4").exists() and any(p.name.startswith(".long.") for p in out.iterdir()),
                 proc, "the first video and the second's temporary file")
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), stdout + stderr
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    why = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert lines[-1].startswith(f"error: {why}: stopped"), stderr
    assert f"1 of 3 songs rendered ({out / 'first.mp4'}); not rendered: {long}, {last}" in lines[-1], stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.mp4"]


# --------------------------------------------------------------------------------------------- gen-audio, train
@pytest.mark.slow
def test_gen_audio_sigterm_keeps_finished_clips_and_their_manifest(tmp_path):
    out = tmp_path / "data"
    with running_cli("gen-audio", "-n", "1000", "-o", str(out), "--preset", "tiny") as proc:
        wait_for(lambda: (out / "clip_00001.wav").exists(), proc, "two finished clips")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stdout + stderr and "terminated (SIGTERM)" in stderr
    import json

    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    listed = {e["wav"] for e in lines} | {e["mp4"] for e in lines}
    assert len(lines) >= 2
    assert {p.name for p in out.iterdir()} == listed | {"manifest.jsonl"}  # no temp, no orphan clip


@pytest.mark.slow
def test_two_trainings_with_one_run_name(tmp_path):
    env = {"SYNESTHETE_PATHS__RUNS": str(tmp_path / "runs"), "SYNESTHETE_TRAIN__CHECKPOINT_EVERY": "100000"}
    args = ("train", "vae", "--preset", "tiny", "--max-steps", "100000", "--run-name", "dup")
    folder = tmp_path / "runs" / "dup"
    with running_cli(*args, env=env) as first:
        wait_for(lambda: (folder / "settings.json").exists() and list(folder.glob("events.out.tfevents.*")), first,
                 "the first run to start")
        second = call_cli(*args, env=env)
        assert_user_error(second, "run folder", "in use by another synesthete job")
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the second wrote nothing there
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr  # training's own handler: checkpoint, then stop
    assert (folder / "ckpt_latest.pt").exists() and not (folder / ".lock").exists()
    assert temps(folder) == []

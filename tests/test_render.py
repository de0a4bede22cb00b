"""`synesthete render` with the committed checkpoints: real decoding, generation, H.264 + AAC encoding.

Every test here renders through the real CLI (in this process, ``call_cli``; the Ctrl-C test in a real
process, which it signals), seconds of CPU each: the module is marked slow.
"""

from __future__ import annotations

import math
import signal
import time

import pytest
import torch
from conftest import assert_user_error, call_cli, running_cli, summary_rows, wait_for

from synesthete.audio.features import FeatureExtractor, level_gain
from synesthete.audio.synth import synthesize
from synesthete.media import load_audio, load_video, write_video, write_wav
from synesthete.settings import load_settings

pytestmark = pytest.mark.slow

FAST = ("--steps", "4")  # few sampler steps keep each render to seconds; quality is not under test here
# Where only the file handling is under test (formats, rates, channels, excerpts), not the picture:
# 2 sampler steps without the guidance pass, a quarter of FAST's network work.
IO_ONLY = ("--steps", "2", "--guidance", "1")


def render(*args: str, env: dict[str, str] | None = None):
    """`synesthete render ARGS` through the CLI's entry point, in this process (conftest.call_cli)."""
    return call_cli("render", *args, env=env)


def _song(seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 7) -> torch.Tensor:
    """A procedural clip with drums, resampled and spread over channels, [C, N]."""
    import torchaudio

    settings = load_settings()
    wave, _ = synthesize(seed, settings, duration=seconds, drums=True, silence=False, dropout=False)
    if sample_rate != settings.audio.sample_rate:
        wave = torchaudio.functional.resample(wave, settings.audio.sample_rate, sample_rate)
    return torch.stack([wave * (0.8 + 0.2 * c) for c in range(channels)])


def _check_output(path, seconds: float, fps: int = 30, size: int = 128) -> torch.Tensor:
    frames, got_fps = load_video(path)
    assert got_fps == fps
    assert abs(frames.shape[0] - round(seconds * fps)) <= 1, frames.shape
    assert frames.shape[1:] == (3, size, size)
    audio, sr = load_audio(path)
    assert sr in (44100, 48000)
    assert abs(audio.shape[-1] / sr - seconds) < 0.1  # AAC pads to whole 1024-sample frames
    return frames


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Real input files: a 2 s wav and mp3, 1 s stereo 44.1 kHz and 8 kHz, 2 s of silence, a 0-sample wav."""
    from torchcodec.encoders import AudioEncoder

    root = tmp_path_factory.mktemp("inputs")
    files = {}
    files["wav"] = root / "song.wav"
    write_wav(files["wav"], _song(2.0), 16000)
    files["mp3"] = root / "song.mp3"
    AudioEncoder(_song(2.0, 44100), sample_rate=44100).to_file(str(files["mp3"]))
    files["stereo"] = root / "stereo44k.wav"
    write_wav(files["stereo"], _song(1.0, 44100, channels=2), 44100)
    files["8k"] = root / "low8k.wav"
    write_wav(files["8k"], _song(1.0, 8000), 8000)
    files["silent"] = root / "silence.wav"
    write_wav(files["silent"], torch.zeros(1, 32000), 16000)
    files["empty"] = root / "empty.wav"
    write_wav(files["empty"], torch.zeros(1, 0), 16000)
    files["noaudio"] = root / "noaudio.mp4"
    write_video(files["noaudio"], torch.zeros(10, 3, 32, 32), 30)
    files["corrupt"] = root / "corrupt.mp3"
    files["corrupt"].write_bytes(b"ID3" + bytes(range(256)) * 20)
    return files


@pytest.fixture(scope="module")
def song_render(inputs, tmp_path_factory):
    """The 2 s wav rendered once with FAST: its folder, output and process."""
    folder = tmp_path_factory.mktemp("song_render")
    out = folder / "wav.mp4"
    return folder, out, render(str(inputs["wav"]), "-o", str(out), *FAST)


def test_render_wav(song_render):
    folder, out, proc = song_render
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = _check_output(out, 2.0)
    assert frames.float().std() > 1.0  # a picture, not a blank
    assert "real-time factor" in proc.stdout
    assert sorted(p.name for p in folder.iterdir()) == [out.name]


def test_render_mp3(inputs, tmp_path):
    out = tmp_path / "mp3.mp4"
    proc = render(str(inputs["mp3"]), "-o", str(out), *IO_ONLY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = _check_output(out, 2.0)
    assert frames.float().std() > 1.0  # a picture, not a blank
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize("kind", ["stereo", "8k"])
def test_render_other_rates_and_channels(inputs, tmp_path, kind):
    out = tmp_path / "o.mp4"
    proc = render(str(inputs[kind]), "-o", str(out), *IO_ONLY, "--size", "64")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_output(out, 1.0, size=64)
    audio, sr = load_audio(out)
    assert audio.shape[0] == (2 if kind == "stereo" else 1)
    assert sr == (44100 if kind == "stereo" else 48000)


def test_a_loud_song_is_turned_down_for_the_brain_and_keeps_its_sound(inputs, tmp_path):
    """An excerpt louder than render.level is analysed turned down (the summary says by how much); the video
    keeps the song's own sound. The procedural song, at the level of the training clips, is not."""
    settings = load_settings()
    extract = FeatureExtractor(settings.audio, settings.video.fps)
    wave = _song(2.0)[0]
    features = extract(wave)
    assert level_gain(features, settings) == 1.0
    loud = (wave * 4).clamp(-1, 1)  # 12 dB louder, clipped: a mastered song's kind of level
    gain = level_gain(extract(loud), settings)
    assert 0.2 < gain < 0.6
    turned = extract(loud * gain)
    assert level_gain(turned, settings) == pytest.approx(1.0, abs=0.02)  # now at render.level
    assert level_gain(features, settings.updated(render={"level": 0})) == 1.0
    song = tmp_path / "loud.wav"
    write_wav(song, loud[None], 16000)
    out = tmp_path / "loud.mp4"
    proc = render(str(song), "-o", str(out), *IO_ONLY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary_rows(proc.stdout)["level"] == f"turned down {-20 * math.log10(gain):.1f} dB for the model " \
                                                 "(render.level)"
    audio, sr = load_audio(out)
    assert audio.abs().max() > 0.9  # the song's own level in the video
    assert "level" not in summary_rows(render(str(inputs["wav"]), "-o", str(tmp_path / "o.mp4"), *IO_ONLY).stdout)


def test_start_and_duration(inputs, tmp_path):
    out = tmp_path / "excerpt.mp4"
    proc = render(str(inputs["wav"]), "-o", str(out), *IO_ONLY, "--start", "0.5", "--duration", "1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_output(out, 1.0)


def test_a_song_that_falls_silent_calms_down(tmp_path):
    song = tmp_path / "falls-silent.wav"
    write_wav(song, torch.cat([_song(1.0), torch.zeros(1, 24000)], 1), 16000)  # 1 s of drums, 1.5 s of silence
    out = tmp_path / "calm.mp4"
    proc = render(str(song), "-o", str(out), *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = _check_output(out, 2.5).float() / 255
    motion = (frames[1:] - frames[:-1]).abs().mean((1, 2, 3))
    loud, calm = motion[:30].mean(), motion[52:].mean()  # the drums; the silence after its first 0.75 s
    assert calm < loud / 2, (float(calm), float(loud))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("corrupt", "could not be decoded"),
        ("noaudio", "no audio stream"),
        ("empty", "no audio"),
        ("silent", "is silent"),
    ],
)
def test_bad_inputs(inputs, tmp_path, kind, message):
    src = tmp_path / "nope.wav" if kind == "missing" else inputs[kind]
    out = tmp_path / "out.mp4"
    assert_user_error(render(str(src), "-o", str(out), *FAST), message)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_bad_outputs_and_checkpoints(inputs, tmp_path):
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    assert_user_error(render(str(inputs["wav"]), "-o", str(existing)), "already exists", "--overwrite")
    assert existing.read_bytes() == b"keep me"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(render(str(inputs["wav"]), "-o", str(blocker / "out.mp4")), "cannot")
    empty_dir = tmp_path / "no-checkpoints"
    empty_dir.mkdir()
    out = tmp_path / "o.mp4"
    assert_user_error(render(str(inputs["wav"]), "-o", str(out), "--checkpoint-dir", str(empty_dir)), "vae.pt")
    # The network is rebuilt from the checkpoint's own config, so other model-size settings don't matter;
    # the frame rate is part of what the model means, and another one is refused in one line.
    assert_user_error(
        render(str(inputs["wav"]), "-o", str(out), env={"SYNESTHETE_VIDEO__FPS": "24"}), "trained at 30 fps",
    )
    assert_user_error(render(str(inputs["wav"]), "-o", str(out), "--steps", "0"), "sampling.steps")
    assert not out.exists()


def test_ctrl_c_leaves_no_partial_output(tmp_path):
    song = tmp_path / "long.wav"
    write_wav(song, _song(30.0), 16000)
    out = tmp_path / "long.mp4"

    def temporary() -> list:
        return list(tmp_path.glob(".long.*.tmp.mp4"))  # files.atomic_path's name for long.mp4 while it is written

    # SIGINT at its default disposition, as a terminal's foreground job has it (conftest.running_cli).
    with running_cli("render", str(song), "-o", str(out)) as proc:
        wait_for(lambda: bool(temporary()), proc, "the temporary mp4")  # encoding has started
        time.sleep(0.5)
        assert temporary() and not out.exists(), "the signal must come while the video is half-written"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in stdout + stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]  # no output, temporary file or lock


def test_a_song_of_two_sections_renders_with_one_cut_on_the_downbeat_at_the_boundary(tmp_path):
    """A generated song of two sections (AB: 4 bars each at 128 BPM), rendered across the boundary with the
    shipped checkpoints: the summary lists both sections and one cut, and the picture changes look there, on
    the frame of the downbeat that starts B: the mean picture of the half second before that frame and of the
    half second from it differ far more than the same half seconds a half second earlier or later. (Where the
    cut falls exactly is checked on the result, in tests/test_api.py.)"""
    from synesthete.media import to_unit

    wave, score = synthesize(3, load_settings(), form="AB", tempo=128.0)
    song, out = tmp_path / "ab.wav", tmp_path / "ab.mp4"
    write_wav(song, wave, 16000)
    boundary = score["sections"][1]["start"]  # a downbeat
    start = 4.8
    proc = render(str(song), "-o", str(out), *FAST, "--start", str(start), "--duration", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 cut," in proc.stdout and "from the song's hash" in proc.stdout
    assert " A 0:04.8-0:06.3 " in proc.stdout.replace("│", " ") and "B 0:06.3-0:07.8" in proc.stdout
    x = to_unit(_check_output(out, 3.0)).double()

    def change(i: int, w: int = 15) -> float:  # mean picture of frames [i - w, i) against [i, i + w)
        return float((x[i - w : i].mean(0) - x[i : i + w].mean(0)).abs().mean())

    cut = round((boundary - start) * 30)
    assert max(change(i) for i in (cut - 1, cut, cut + 1)) > 1.5 * max(change(cut - 15), change(cut + 15))

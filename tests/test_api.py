"""The Python API (``synesthete.Synesthete``) and batch render (``synesthete render a b c -o folder/``).

Renders use tiny random-weight checkpoints (32x32 frames) built from the current code, real audio files and
real FFmpeg: what is under test is the API and the batch handling around the model, not the pictures. The
batch tests run the real CLI in this process (``call_cli``); the one that renders twice is marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, call_cli, tiny_checkpoints

from synesthete.errors import OutputError
from synesthete.media import load_audio, load_video, write_video, write_wav
from synesthete.settings import load_settings

STEPS = 2  # sampler steps: enough to exercise the sampler, cheap on the tiny network


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    """Tiny (preset tiny: 32x32 frames) checkpoints."""
    return tiny_checkpoints(tmp_path_factory.mktemp("tiny_ckpt"), load_settings("tiny"))


def _drums(seconds: float, seed: int = 3) -> torch.Tensor:
    """A procedural clip with drums, mono [N] at 16 kHz."""
    from synesthete.audio.synth import synthesize

    wave, _ = synthesize(seed, load_settings("tiny"), duration=seconds, drums=True, silence=False, dropout=False)
    return wave


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    """Real input files: 1 s wav and ogg songs (with drums), a corrupt mp3, a 0-sample wav, a video with no audio."""
    from torchcodec.encoders import AudioEncoder

    root = tmp_path_factory.mktemp("songs")
    files = {"wav": root / "one.wav", "ogg": root / "two.ogg", "corrupt": root / "bad.mp3",
             "empty": root / "empty.wav", "noaudio": root / "mute.mp4"}
    write_wav(files["wav"], _drums(1.0), 16000)
    AudioEncoder(_drums(1.0, seed=5).unsqueeze(0), sample_rate=16000).to_file(str(files["ogg"]))
    files["corrupt"].write_bytes(b"ID3" + bytes(range(256)) * 20)
    write_wav(files["empty"], torch.zeros(1, 0), 16000)
    write_video(files["noaudio"], torch.zeros(10, 3, 32, 32), 30)
    return files


@pytest.fixture(scope="module")
def pipe(ckpt_dir):
    from synesthete import Synesthete

    return Synesthete.from_pretrained(ckpt_dir, device="cpu", sampling={"steps": STEPS})


# --------------------------------------------------------------------------------------------- API: render
def test_from_pretrained_fits_the_settings_to_the_checkpoint(pipe, ckpt_dir):
    from synesthete.checkpoint import Models

    assert isinstance(pipe.models, Models)
    assert pipe.settings.sampling.steps == STEPS  # the override holds
    tiny = load_settings("tiny")
    # No preset was given: the frame size and window come from the checkpoint, not the defaults.
    assert (pipe.settings.video.width, pipe.settings.video.height) == (tiny.video.width, tiny.video.height)
    assert pipe.models.config.window == tiny.dit.window
    assert pipe.settings.paths.checkpoints == ckpt_dir
    assert str(pipe.device) == "cpu"


def test_render_to_memory(pipe, songs):
    result = pipe.render(songs["wav"], seed=3, style="spectrum")
    tiny = load_settings("tiny")
    assert result.output is None
    assert result.frames.dtype == torch.uint8
    assert result.frames.shape == (30, 3, tiny.video.height, tiny.video.width) == (result.num_frames, 3,
                                                                                   result.height, result.width)
    assert (result.fps, result.seed, result.style, result.steps, result.sampler) == (30, 3, "spectrum", STEPS, "dpm++")
    assert (result.start, result.duration) == (0.0, pytest.approx(1.0))
    assert (result.guidance, result.style_guidance) == (2.0, 1.0)
    assert result.lanes == 1  # the tiny DiT's window of 4 leaves no room for a bridge between 2 + 2 context frames
    assert result.precision in ("bf16", "float32") and result.device == "cpu"
    assert set(result.timings) == {"setup", "analysis", "features", "network", "vae_decode", "encode_mux", "other"}
    assert all(isinstance(v, float) and v >= 0 for v in result.timings.values())
    assert sum(result.timings.values()) == pytest.approx(result.wall, rel=1e-6)
    assert result.rtf == pytest.approx(result.wall / result.duration)
    assert "frames=<(30, 3" in repr(result)  # no tensor dump


def test_render_is_deterministic_for_a_seed(pipe, songs):
    from synesthete.render import render_song

    a = pipe.render(songs["wav"], seed=11, duration=0.5)
    b = pipe.render(songs["wav"], seed=11, duration=0.5)
    c = pipe.render(songs["wav"], seed=12, style=a.style, duration=0.5)
    assert a.frames.shape[0] == 15
    assert torch.equal(a.frames, b.frames)
    assert not torch.equal(a.frames, c.frames)
    # The one-call library function renders the same frames as the pipeline.
    settings = pipe.settings.updated(render={"seed": 11})
    assert torch.equal(render_song(settings, songs["wav"], None, duration=0.5, progress=False).frames, a.frames)


@pytest.fixture(scope="module")
def two_parts(tmp_path_factory) -> tuple[Path, dict]:
    """A generated song of two sections (AB, 4 bars each at 128 BPM, 13.8 s) as a wav, and its score."""
    from synesthete.audio.synth import synthesize

    wave, score = synthesize(3, load_settings(), form="AB", tempo=128.0)
    path = tmp_path_factory.mktemp("form") / "ab.wav"
    write_wav(path, wave, 16000)
    return path, score


def test_render_follows_the_sections_with_the_same_rules_as_the_cli(pipe, two_parts):
    """Synesthete.render(sections=...) as `render --sections`: on (the default), an excerpt across the A-B boundary
    cuts once, on the frame of the downbeat that starts B, and lists both sections with their looks; off, no cut
    and one look. Without a seed the seed is the song's own (its hash), the same for the same song."""
    from synesthete.render import song_seed

    path, score = two_parts
    boundary = score["sections"][1]["start"]
    result = pipe.render(path, start=boundary - 2.0, duration=4.0)
    assert result.seed == song_seed(path) and result.seed_from_song
    assert [sec.label for sec in result.sections] == ["A", "B"] and result.sections[1].start == pytest.approx(
        boundary, abs=0.011)
    assert result.cuts == [result.sections[1].frame] and abs(result.cuts[0] - 2.0 * result.fps) <= 1
    assert result.tempo == pytest.approx(128.0, rel=0.02) and result.timings["analysis"] > 0
    assert result.style == " / ".join(dict.fromkeys(sec.style for sec in result.sections))
    off = pipe.render(path, start=boundary - 2.0, duration=4.0, sections=False)
    assert off.sections == [] and off.cuts == [] and off.tempo is None and off.timings["analysis"] == 0
    assert off.seed == result.seed and off.frames.shape == result.frames.shape
    assert not torch.equal(off.frames[result.cuts[0]:], result.frames[result.cuts[0]:])  # B is another look
    given = pipe.render(path, start=boundary - 2.0, duration=1.0, seed=5)
    assert given.seed == 5 and not given.seed_from_song


def test_render_excerpt_and_size(pipe, songs):
    result = pipe.render(songs["wav"], start=0.5, duration=0.4, size=64)
    assert result.frames.shape == (12, 3, 64, 64)
    assert (result.start, result.duration) == (0.5, pytest.approx(0.4))


def test_render_to_file(pipe, songs, tmp_path):
    out = tmp_path / "song.mp4"
    result = pipe.render(songs["ogg"], out, seed=3)
    assert result.output == out and result.frames is None
    frames, fps = load_video(out)
    assert fps == 30 and frames.shape == (30, 3, result.height, result.width)
    audio, sr = load_audio(out)
    assert sr == 48000 and abs(audio.shape[-1] / sr - 1.0) < 0.1  # 16 kHz is resampled for AAC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mp4"]  # no temporary file, no lock left
    with pytest.raises(OutputError, match="already exists"):
        pipe.render(songs["ogg"], out)
    assert pipe.render(songs["ogg"], out, overwrite=True, steps=1).steps == 1
    with pytest.raises(OutputError, match=r"\.mp4"):
        pipe.render(songs["ogg"], tmp_path / "song.avi")


def test_plan_checks_without_models(songs, tmp_path):
    from synesthete import Synesthete
    from synesthete.errors import InputError

    pipe = Synesthete(load_settings(paths={"checkpoints": str(tmp_path / "nowhere")}))
    job = pipe.plan(songs["wav"], tmp_path / "x.mp4", start=0.25)
    assert job.seconds == pytest.approx(0.75) and job.num_frames == round(0.75 * 30) and job.style
    with pytest.raises(InputError, match="no audio"):
        pipe.plan(songs["empty"])
    with pytest.raises(InputError, match="past the end"):
        pipe.plan(songs["wav"], start=5.0)
    assert pipe._models is None  # nothing loaded


def test_render_a_non_square_checkpoint(songs, tmp_path):
    """The latent shape comes from the DiT's config: a 64x32 model renders 64x32 frames (no preset needed)."""
    from synesthete import Synesthete

    tiny_checkpoints(tmp_path, load_settings("tiny", video={"width": 64, "height": 32}))
    wide = Synesthete.from_pretrained(tmp_path, device="cpu")
    result = wide.render(songs["wav"], steps=1, duration=0.3)
    assert result.frames.shape == (9, 3, 32, 64) and (result.width, result.height) == (64, 32)


# --------------------------------------------------------------------------------------------- API: score
@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory) -> Path:
    """A procedural clip with drums and a silence, and its visualizer's frames (2 s, tiny), as an mp4 with its
    audio (the silence makes flicker and the silence response defined)."""
    from synesthete.data import make_clip

    tiny = load_settings("tiny")
    clip = make_clip(21, tiny, with_frames=True, drums=True, silence=True, dropout=False, duration=2.0)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, clip["frames"], tiny.video.fps, audio=clip["audio"], sample_rate=tiny.audio.sample_rate)
    return path


def test_score_returns_the_eval_figures(clip_mp4):
    from synesthete import Synesthete, VideoScore
    from synesthete.eval import json_safe, run_eval

    settings = load_settings()
    score = Synesthete(settings).score(clip_mp4)
    assert isinstance(score, VideoScore)
    assert score.video == clip_mp4 and score.audio == clip_mp4 and score.beats == "estimated"
    assert score.frames == 60 and score.fps == pytest.approx(30)
    assert score.scored_seconds == pytest.approx(2.0, abs=0.04)
    sync, picture = score.sync, score.picture
    for value in (sync.av_align, sync.bas, sync.flicker, sync.silence_ratio, sync.silent_fraction,
                  picture.recognisability, picture.cut_rate, picture.style_stability, picture.sharpness):
        assert math.isfinite(value)
    assert 0 <= score.sync.av_align <= 1 and score.sync.audio_peaks > 0
    assert isinstance(score.picture.top_family, str)
    assert math.isnan(score.picture.on_style)  # no style was requested
    # `synesthete eval --video` reports the same figures.
    result, _ = run_eval(settings, video=clip_mp4)
    assert json_safe(result) == json_safe(score.to_dict())


# --------------------------------------------------------------------------------------------- batch names
def test_output_names_are_stable_and_distinct():
    from synesthete.files import output_names

    songs = [Path("a/one.mp3"), Path("b/two.wav"), Path("b/one.wav"), Path("c/two.wav"), Path("c/Three.flac")]
    assert output_names(songs) == ["one_mp3.mp4", "two.mp4", "one_wav.mp4", "two-2.mp4", "Three.mp4"]
    assert output_names(songs) == output_names(list(songs))  # the same inputs, the same names
    assert output_names([Path("x.wav")]) == ["x.mp4"]


def test_expand_songs(tmp_path):
    from synesthete.files import expand_songs

    folder = tmp_path / "songs"
    folder.mkdir()
    for name in ("b.wav", "a.MP3", "notes.txt", ".hidden.wav", "cover.jpg"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.ogg"
    found, problems = expand_songs([missing, folder, folder / "b.wav", empty])
    assert found == [missing, folder / "a.MP3", folder / "b.wav"]  # sorted, once each, missing kept to report
    assert [p for p, _ in problems] == [empty] and "no audio files" in problems[0][1]


# --------------------------------------------------------------------------------------------- batch CLI
TINY_CLI = ("--steps", str(STEPS))


def test_batch_render_skips_a_bad_file(ckpt_dir, songs, tmp_path):
    out = tmp_path / "videos"  # created by the render
    proc = call_cli("render", str(songs["wav"]), str(songs["corrupt"]), str(songs["ogg"]), "-o", str(out),
                   *TINY_CLI, "--checkpoint-dir", str(ckpt_dir))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert sorted(p.name for p in out.iterdir()) == ["one.mp4", "two.mp4"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.mp3" in errors[0] and "could not be decoded" in errors[0], proc.stderr
    assert "2 of 3 songs rendered" in proc.stdout
    for name in ("one.mp4", "two.mp4"):
        frames, fps = load_video(out / name)
        assert fps == 30 and frames.shape[0] == 30


@pytest.mark.slow
def test_batch_render_of_a_folder_refuses_existing_outputs(ckpt_dir, songs, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    for name, src in (("x.wav", songs["wav"]), ("x.ogg", songs["ogg"]), ("y.wav", songs["wav"])):
        (folder / name).write_bytes(src.read_bytes())
    (folder / "readme.txt").write_text("not a song")
    out = tmp_path / "out"
    out.mkdir()
    (out / "y.mp4").write_bytes(b"keep me")
    args = ("render", str(folder), "-o", str(out), *TINY_CLI, "--checkpoint-dir", str(ckpt_dir))
    proc = call_cli(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "y.mp4").read_bytes() == b"keep me"
    # Two songs share the stem x: their extensions tell them apart.
    assert sorted(p.name for p in out.iterdir()) == ["x_ogg.mp4", "x_wav.mp4", "y.mp4"]
    again = call_cli(*args, "--overwrite")
    assert again.returncode == 0, again.stdout + again.stderr
    assert load_video(out / "y.mp4")[0].shape[0] == 30
    assert sorted(p.name for p in out.iterdir()) == ["x_ogg.mp4", "x_wav.mp4", "y.mp4"]


def test_batch_render_needs_a_folder_output(ckpt_dir, songs, tmp_path):
    proc = call_cli("render", str(songs["wav"]), str(songs["ogg"]), "-o", str(tmp_path / "both.mp4"),
                   "--checkpoint-dir", str(ckpt_dir))
    assert_user_error(proc, "must be a folder")
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert list(tmp_path.iterdir()) == []

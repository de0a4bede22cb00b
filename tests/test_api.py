"""The Python API (``synesthete.Synesthete``): render to memory or a file, sections, plan, score, and the
project's own errors for bad options, settings and outputs.

Renders use tiny random-weight checkpoints (conftest's ``ckpt_dir`` and ``pipe``: 32x32 frames) built from the
current code, real audio files and real FFmpeg: what is under test is the API around the model, not the
pictures. Batch render (the CLI's) is in test_batch.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, render, tiny_checkpoints, tone

from synesthete.errors import ConfigError, InputError, OutputError, SynestheteError
from synesthete.media import load_audio, load_video, write_video, write_wav
from synesthete.settings import load_settings

STEPS = 2  # conftest's pipe: sampler steps enough to exercise the sampler, cheap on the tiny network


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
    assert (result.guidance, result.style_guidance) == (3.0, 1.0)
    assert result.lanes == 1  # the tiny DiT's window of 4 leaves no room for a bridge between 2 + 2 context frames
    assert result.precision in ("bf16", "float32") and result.device == "cpu"
    assert set(result.timings) == {"setup", "analysis", "features", "network", "vae_decode", "encode_mux", "other"}
    assert all(isinstance(v, float) and v >= 0 for v in result.timings.values())
    assert sum(result.timings.values()) == pytest.approx(result.wall, rel=1e-6)
    assert result.rtf == pytest.approx(result.wall / result.duration)
    assert "frames=<(30, 3" in repr(result)  # no tensor dump


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------------------------- API: errors
@pytest.mark.parametrize(("options", "keyword"), [
    ({"steps": 0}, "steps"), ({"steps": -1}, "steps"), ({"guidance": float("nan")}, "guidance"),
    ({"guidance": float("inf")}, "guidance"), ({"style_guidance": float("nan")}, "style_guidance"),
    ({"style_guidance": float("-inf")}, "style_guidance"), ({"lanes": 0}, "lanes"), ({"seed": -1}, "seed"),
    ({"sampler": "bogus"}, "sampler"),
])
def test_api_option_errors_are_the_projects_own(pipe, song, options, keyword):
    """7. They were pydantic's multi-line ValidationError (with a URL), which `except SynestheteError` missed."""
    with pytest.raises(SynestheteError) as info:
        pipe.render(song, **options)
    assert isinstance(info.value, InputError)
    message = str(info.value)
    assert message.startswith(f"invalid option: {keyword}: ") and "\n" not in message and "http" not in message


def test_api_setting_errors_are_config_errors(ckpt_dir, monkeypatch):
    from synesthete import Synesthete

    with pytest.raises(ConfigError, match=r"^invalid setting: sampling\.steps: "):
        Synesthete.from_pretrained(ckpt_dir, device="cpu", sampling={"steps": 0})
    monkeypatch.setenv("SYNESTHETE_RENDER__CRF", "99")
    with pytest.raises(ConfigError, match=r"^invalid setting: render\.crf: "):
        Synesthete()


@pytest.mark.slow
def test_existing_output_names_the_callers_own_overwrite(ckpt_dir, pipe, song, tmp_path):
    """7. The API's message for an existing output said `--overwrite`; its keyword is `overwrite=True`."""
    out = tmp_path / "song.mp4"
    out.write_bytes(b"keep")
    with pytest.raises(OutputError, match=r"use overwrite=True to replace it\)$"):
        pipe.render(song, out)
    assert_user_error(render(ckpt_dir, str(song), "-o", str(out)), "use --overwrite to replace it")
    other = tmp_path / "other.wav"
    write_wav(other, tone(0.2), 16000)
    proc = render(ckpt_dir, str(song), str(other), "-o", str(tmp_path))  # song.mp4 exists: a batch
    assert proc.returncode == 1 and "use --overwrite to replace it" in proc.stderr, proc.stderr
    assert out.read_bytes() == b"keep"


# --------------------------------------------------------------------------------------------- API: memory
def test_render_to_memory_is_estimated_and_refused_above_the_limit(ckpt_dir, song):
    """10. A 2-hour song at 128 px to memory needed about 21 GB (frames gathered, then concatenated)."""
    from synesthete import Synesthete
    from synesthete.render import check_memory, memory_need

    settings = load_settings()  # 128x128 frames at 30 fps
    two_hours = 2 * 3600 * 30
    assert memory_need(settings, two_hours) == two_hours * 3 * 128 * 128  # held once: 10.6 GB, not 21
    with pytest.raises(OutputError, match=r"7200\.0 s at 128x128 would hold 10\.62 GB of frames, more than "
                                          r"render\.memory_gb \(4 GB\): render to a file"):
        check_memory(settings, two_hours)
    check_memory(settings, 30 * 60)  # a minute is fine
    small = Synesthete.from_pretrained(ckpt_dir, device="cpu", render={"memory_gb": 1e-5})
    with pytest.raises(OutputError, match=r"would hold 0\.00 GB of frames, more than render\.memory_gb"):
        small.render(song)  # 30 frames of 32x32: 92 kB, above 10 kB
    assert small.render(song, duration=0.1, steps=1).frames.shape == (3, 3, 32, 32)  # 9 kB


def test_render_to_memory_holds_its_frames_once():
    """10. Frames go into one tensor, allocated at the start: no blocks joined at the end."""
    from synesthete.render.output import MemorySink

    sink = MemorySink(10, 4, 6)
    for n in (4, 4, 2):
        sink.add(torch.rand(n, 3, 4, 6))
    frames = sink.frames()
    assert frames.shape == (10, 3, 4, 6) and frames.dtype == torch.uint8
    assert frames.untyped_storage().data_ptr() == sink.data.untyped_storage().data_ptr()
    assert frames.untyped_storage().nbytes() == 10 * 3 * 4 * 6

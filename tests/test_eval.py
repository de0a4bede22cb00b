"""`synesthete eval`: held-out evaluation and scoring of video files, through the library and the real CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, call_cli, fits

from synesthete import media
from synesthete.errors import InputError, OutputError
from synesthete.eval import evaluate_heldout, run_eval, score_video
from synesthete.media import load_audio, load_video
from synesthete.metrics import analyse
from synesthete.settings import load_settings


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory):
    """A gen-audio clip (tiny preset, 3 s, 64x64): clip_00000.mp4 with its AAC track, and its wav."""
    from synesthete.gen import generate_dataset
    from synesthete.settings import load_settings

    out = tmp_path_factory.mktemp("gen")
    settings = load_settings("tiny", audio={"clip_seconds": 3.0})
    generate_dataset(settings, num=1, out=out, width=64, height=64)
    return out / "clip_00000.mp4", out / "clip_00000.wav"


@pytest.mark.slow
def test_eval_video_cli_agrees_with_library(clip_mp4, tmp_path, tiny):
    mp4, _ = clip_mp4
    out, png = tmp_path / "results.json", tmp_path / "sync.png"
    proc = call_cli("eval", "--video", str(mp4), "-o", str(out), "--plot", str(png), "--preset", "tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AV-Align" in proc.stdout
    cli = json.loads(out.read_text())
    frames, fps = media.load_video(mp4)
    wave, sr = media.load_audio(mp4, mono=True)
    lib = analyse(frames, wave[0], sr, fps, tiny)
    assert cli["metrics"]["av_align"] == pytest.approx(lib.av.score)
    assert cli["metrics"]["bas"] == pytest.approx(lib.bas)
    assert cli["metrics"]["audio_peaks"] == len(lib.av.audio_peaks) > 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The output exists now: a second run needs --overwrite.
    with pytest.raises(OutputError, match="already exists"):
        run_eval(tiny, video=mp4, json_out=out)
    strict = call_cli("eval", "--video", str(mp4), "-o", str(out), "--overwrite", "--strict", "--preset", "tiny")
    assert strict.returncode == 0, strict.stdout + strict.stderr
    assert json.loads(out.read_text())["strict"] is True


def test_video_without_audio_track(clip_mp4, tmp_path):
    _, wav = clip_mp4
    silent = tmp_path / "noaudio.mp4"
    media.write_video(silent, torch.rand(30, 3, 32, 32), 30)
    assert_user_error(call_cli("eval", "--video", str(silent)), "no usable audio track", "--audio")
    ok = call_cli("eval", "--video", str(silent), "--audio", str(wav))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_corrupt_video(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    assert_user_error(call_cli("eval", "--video", str(bad)), "corrupt.mp4", "could not be decoded")


def _soundtrack(wav, seconds: float, path):
    wave, sr = media.load_audio(wav)
    n = int(seconds * sr)
    out = torch.zeros(1, n)
    out[:, : min(n, wave.shape[-1])] = wave[:, :n]
    media.write_wav(path, out, sr)
    return path


def test_audio_shorter_than_video_scores_the_overlap(clip_mp4, tmp_path, tiny):
    mp4, wav = clip_mp4
    short = _soundtrack(wav, 1.5, tmp_path / "short.wav")
    out = tmp_path / "r.json"
    proc = call_cli("eval", "--video", str(mp4), "--audio", str(short), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "scored the overlap" in proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["scored_seconds"] == pytest.approx(1.5, abs=0.04)
    assert any("overlap" in note for note in result["notes"])
    lib, _ = score_video(tiny, mp4, short)  # the library call says the same
    assert lib["metrics"]["av_align"] == pytest.approx(result["metrics"]["av_align"])


def test_audio_longer_than_video_scores_the_overlap(clip_mp4, tmp_path, tiny):
    mp4, wav = clip_mp4
    result, _ = run_eval(tiny, video=mp4, audio=_soundtrack(wav, 4.5, tmp_path / "long.wav"))
    assert result["scored_seconds"] == pytest.approx(3.0, abs=0.04)
    assert any("overlap" in note and "audio" in note for note in result["notes"])


def test_default_eval_needs_checkpoints(tmp_path):
    proc = call_cli("eval", "--checkpoint-dir", str(tmp_path), "--preset", "tiny")
    assert_user_error(proc, "checkpoint")
    with pytest.raises(InputError, match="--video"):
        run_eval(load_settings("tiny"), audio=tmp_path / "x.wav")


def test_oracle_beats_mismatched_audio_and_static_floor(tiny):
    settings = tiny.updated(eval={"clips": 3, "clip_seconds": 3.0})
    result, panels = evaluate_heldout(settings, progress=False)
    rows = result["rows"]
    assert rows["oracle"]["av_align"] > rows["oracle_other_audio"]["av_align"] + 0.1
    assert rows["oracle"]["av_align"] > rows["oracle_half_beat_shift"]["av_align"]
    assert rows["static"]["av_align"] == 0.0 and rows["static"]["bas"] == 0.0
    assert result["gaps"]["oracle"]["pixel_difference"] > 0.01
    assert "model" not in rows and set(panels) >= {"oracle"}
    assert all(s >= tiny.data.heldout_seed_start for s in result["seeds"])


def test_model_rows_with_real_networks(tiny, tmp_path):
    """The model part end to end with freshly initialised networks (no training): every row and gap exists,
    and a model whose output ignores the audio has no shuffle gap."""
    from synesthete.checkpoint import Models
    from synesthete.eval import write_json
    from synesthete.models.dit import DiT
    from synesthete.models.vae import VAE

    torch.manual_seed(0)
    c = tiny.vae.latent_channels
    models = Models(vae=VAE.from_settings(tiny).eval(), dit=DiT.from_settings(tiny).eval(),
                    latent_mean=torch.zeros(c), latent_std=torch.ones(c))
    one_step = tiny.updated(sampling={"steps": 1})  # what is checked needs no more (the DiT's output is zero)
    result, _ = evaluate_heldout(one_step, models=models, progress=False)
    assert {"model", "model_other_audio", "model_half_beat_shift", "oracle", "static"} <= set(result["rows"])
    gaps = result["gaps"]["model"]
    # DiT's zero-initialised output layer makes the same video for any audio: nothing to gain from the audio.
    assert gaps["pixel_difference"] == pytest.approx(0.0, abs=1e-6)
    assert gaps["av_align_vs_other_audio"] == pytest.approx(0.0, abs=1e-9)
    assert math.isfinite(result["quality"]["vae_psnr_db"]) and 0 <= result["quality"]["vae_ssim"] <= 1
    write_json(tmp_path / "r.json", result)
    assert json.loads((tmp_path / "r.json").read_text())["rows"]["model"]["av_align"] >= 0


@pytest.mark.parametrize("clip_look", [True, False])
def test_heldout_renders_start_in_the_clips_own_look(tiny, monkeypatch, clip_look):
    """eval.clip_look: every held-out render's style exemplar is drawn with its clip's visual parameters (the
    look the FSD floor assumes); off, with the render seed's, as `render` draws it."""
    import synesthete.render.job as render  # generate_frames draws its exemplar through this module
    from synesthete.checkpoint import Models
    from synesthete.eval import heldout_clips
    from synesthete.models.dit import DiT
    from synesthete.models.vae import VAE

    # The looks are under test, not the pictures: one sampler step, 1 s clips.
    s = tiny.updated(eval={"clips": 2, "clip_look": clip_look, "clip_seconds": 1.0}, sampling={"steps": 1})
    torch.manual_seed(0)
    c = s.vae.latent_channels
    models = Models(vae=VAE.from_settings(s).eval(), dit=DiT.from_settings(s).eval(),
                    latent_mean=torch.zeros(c), latent_std=torch.ones(c))
    looks, real = [], render.style_exemplar

    def recording(*args, **kwargs):
        looks.append(args[4] if len(args) > 4 else kwargs.get("look"))
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "style_exemplar", recording)
    evaluate_heldout(s, models=models, progress=False)
    expected = [clip["meta"]["visual"] for clip in heldout_clips(s, 2)] if clip_look else [None, None]
    assert looks == expected


def test_only_the_trainer_and_the_cli_import_the_trainer():
    """Evaluation (and everything else outside ``train/`` and the CLI) depends on ``models/``, never on the
    trainer: no module imports ``synesthete.train``, at the top or inside a function."""
    import ast

    from conftest import ROOT

    package = ROOT / "synesthete"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        part = path.relative_to(package).parts[0]
        if part in ("train", "cli", "cli.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]  # from synesthete import train, too
            else:
                continue
            if any(n == "synesthete.train" or n.startswith("synesthete.train.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


# --------------------------------------------------------------------------------------------- manifests, tables
@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Two gen-audio clips (tiny preset, 3 s) with their manifest."""
    from synesthete.gen import generate_dataset

    out = tmp_path_factory.mktemp("sample")
    generate_dataset(load_settings("tiny", audio={"clip_seconds": 3.0}), num=2, out=out)
    return out


@pytest.mark.slow
def test_eval_video_with_manifest_beats_json_and_out_file(sample, tmp_path):
    from synesthete.metrics import analyse

    entry = [json.loads(line) for line in (sample / "manifest.jsonl").read_text().splitlines()][1]
    video = sample / entry["mp4"]
    out = tmp_path / "r.json"
    proc = call_cli("eval", "--video", str(video), "--manifest", str(sample / "manifest.jsonl"), "--json",
                   "-o", str(out), "--preset", "tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = json.loads(proc.stdout)  # stdout is the JSON alone
    assert printed == json.loads(out.read_text())
    assert printed["tempo_bpm"] == entry["tempo"] and entry["wav"] in printed["beats"]
    frames, fps = load_video(video)
    wave, sr = load_audio(video, mono=True)
    tiny = load_settings("tiny")
    assert printed["metrics"]["bas"] == pytest.approx(analyse(frames, wave[0], sr, fps, tiny, beats=entry["beats"]).bas)

    estimated = call_cli("eval", "--video", str(video), "--json", "--preset", "tiny")
    assert json.loads(estimated.stdout)["beats"] == "estimated"
    table = call_cli("eval", "--video", str(video), "--manifest", str(sample), "--preset", "tiny",
                    env={"COLUMNS": "80"})
    assert "BAS (manifest beats)" in table.stdout and "tempo (manifest)" in table.stdout
    fits(table.stdout)

    stranger = tmp_path / "stranger.mp4"
    shutil.copy(video, stranger)
    assert_user_error(call_cli("eval", "--video", str(stranger), "--manifest", str(sample / "manifest.jsonl")),
                      "lists no clip named stranger.mp4")
    # Named by its soundtrack: a render of clip 1 is scored against clip 1's beats.
    proc = call_cli("eval", "--video", str(stranger), "--audio", str(sample / entry["wav"]), "--manifest",
                   str(sample / "manifest.jsonl"), "--json", "--preset", "tiny")
    assert proc.returncode == 0 and json.loads(proc.stdout)["tempo_bpm"] == entry["tempo"], proc.stderr
    assert_user_error(call_cli("eval", "--manifest", str(sample / "manifest.jsonl")), "--manifest only applies")


def test_heldout_tables_fit_80_columns(tiny, monkeypatch):
    from synesthete.cli.tables import print_heldout
    from synesthete.console import console
    from synesthete.eval import evaluate_heldout

    result, _ = evaluate_heldout(tiny.updated(eval={"clips": 1}), models=None, progress=False)
    monkeypatch.setenv("COLUMNS", "80")  # an 80-column terminal (setting console.width would fix it for good)
    assert console.width == 80
    with console.capture() as captured:
        print_heldout(result)
    text = captured.get()
    fits(text)
    assert "oracle, ½-beat shift" in text and "AV-Align" in text

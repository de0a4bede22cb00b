"""Song analysis: exact beats, downbeats and sections of generated songs found; streaming; `synesthete analyze`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, call_cli

from synesthete.audio.analysis import analyse_file, analyse_wave
from synesthete.audio.frames import FrameAnalyser, frame_features
from synesthete.audio.synth import synthesize
from synesthete.media import write_wav
from synesthete.metrics.beats import boundary_hits, f_measure, labels_at, pairwise_label_f
from synesthete.settings import load_settings

SR = 16000


@pytest.fixture(scope="module")
def song():
    """A generated song with a form (ABAC) at 128 BPM: its wave and exact score."""
    return synthesize(11, load_settings(), form="ABAC", tempo=128.0)


@pytest.mark.slow
def test_analysis_finds_the_exact_beats_downbeats_and_sections_of_a_generated_song(song, tmp_path):
    """Beats within 70 ms (F >= 0.95), downbeats the same (F >= 0.9), every section boundary within one bar,
    and the repeated part (the second A) gets the first one's label; the file, decoded by FFmpeg, gives the
    same answer as the wave."""
    wave, score = song
    a = analyse_wave(wave, SR)
    assert a.tempo == pytest.approx(score["tempo"], rel=0.02)
    assert f_measure(score["beats"], a.beats) >= 0.95
    assert f_measure(score["downbeats"], a.downbeats) >= 0.9
    bar = 240 / score["tempo"]
    truth = [s["start"] for s in score["sections"][1:]]
    hit, precision = boundary_hits(truth, [s.start for s in a.sections[1:]], bar)
    assert hit == 1.0 and precision == 1.0, (truth, a.sections)
    assert all(np.min(np.abs(a.downbeats - s.start)) < 1e-9 for s in a.sections[1:])  # boundaries are downbeats
    beats = np.asarray(score["beats"])
    found = labels_at(beats, [(s.start, s.end, s.label) for s in a.sections])
    assert pairwise_label_f(labels_at(beats, [(s["start"], s["end"], s["label"]) for s in score["sections"]]),
                            found) >= 0.9
    assert "".join(s.label for s in a.sections) == score["form"]
    path = tmp_path / "song.wav"
    write_wav(path, wave, SR)
    b = analyse_file(path)
    assert b.tempo == pytest.approx(a.tempo, rel=1e-3) and b.sections == a.sections
    assert f_measure(a.beats, b.beats, 0.011) == 1.0


def test_frames_do_not_depend_on_how_the_wave_is_cut():
    """FrameAnalyser fed in odd blocks gives the frames of a one-shot analysis (a centred STFT)."""
    wave = torch.randn(3 * SR + 123, generator=torch.Generator().manual_seed(0)) * 0.1
    whole = frame_features(wave, SR)
    assert whole.num_frames == 1 + wave.numel() // 160
    streamed = FrameAnalyser(SR)
    for block in torch.split(wave, [1, 999, 7, 20000, 160, wave.numel() - 21167]):
        streamed.feed(block)
    parts = streamed.finish()
    assert np.allclose(parts.mel_db, whole.mel_db, atol=1e-3) and np.allclose(parts.chroma, whole.chroma, atol=1e-4)
    direct = torch.stft(wave, 1024, 160, window=torch.hann_window(1024), center=True, pad_mode="constant",
                        return_complex=True).abs().pow(2).T * FrameAnalyser(SR).calibration
    mel = (10 * torch.log10(direct @ FrameAnalyser(SR).fbank + 1e-12)).clamp(min=-80)
    assert np.allclose(whole.mel_db, mel.numpy(), atol=1e-3)


def test_silence_and_short_audio_have_no_beats_and_one_section():
    for wave in (torch.zeros(5 * SR), torch.randn(SR // 10) * 0.1, torch.zeros(0)):
        a = analyse_wave(wave, SR)
        assert len(a.beats) == 0 or len(a.beats) <= 2
        assert len(a.sections) <= 1 and all(s.label == "A" for s in a.sections)
        assert json.dumps(a.to_dict())


def test_scores_of_an_analysis():
    assert f_measure([1.0, 2.0, 3.0], [1.05, 2.0, 3.2]) == pytest.approx(2 / 3)
    assert f_measure([], []) == 1.0 and f_measure([1.0], []) == 0.0
    assert boundary_hits([10.0, 20.0], [11.5, 30.0], 2.0) == (0.5, 0.5)
    assert pairwise_label_f(list("AABB"), list("CCDD")) == 1.0
    assert pairwise_label_f(list("AABB"), list("ABCD")) == 0.0


@pytest.mark.slow
def test_analyze_command_prints_json_and_plots(song, tmp_path):
    wave, score = song
    path = tmp_path / "song.wav"
    write_wav(path, wave, SR)
    plot = tmp_path / "novelty.png"
    proc = call_cli("analyze", str(path), "--json", "--plot", str(plot))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["beat_count"] == len(data["beats"]) and data["downbeat_count"] == len(data["downbeats"])
    assert data["sections"][0]["start"] == 0 and data["tempo"] == pytest.approx(128, rel=0.02)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size < 200_000
    table = call_cli("analyze", str(path))
    assert table.returncode == 0 and "BPM" in table.stdout and "sections" in table.stdout
    for label in {s["label"] for s in data["sections"]}:
        assert f"│ {label} " in table.stdout
    assert_user_error(call_cli("analyze", str(path), "--plot", str(plot)), "exists")
    assert_user_error(call_cli("analyze", str(tmp_path / "missing.mp3")), "does not exist")
    assert_user_error(call_cli("analyze", str(path), "--plot", str(tmp_path / "x.jpg")), ".png")
    text = tmp_path / "notes.mp3"
    text.write_text("not audio")
    assert_user_error(call_cli("analyze", str(text)), "could not be decoded")

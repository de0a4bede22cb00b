"""Frame-aligned features: absolute loudness, onsets on the right frame, silence stays silent."""

from __future__ import annotations

import torch

from synesthete.audio.features import FeatureExtractor, feature_names, frames_for, num_features
from synesthete.settings import load_settings


def _bursts(sr: int, seconds: float, times: list[float], tone: float = 0.05) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    n = round(seconds * sr)
    t = torch.arange(n) / sr
    wave = tone * torch.sin(2 * torch.pi * 220 * t)
    for onset in times:
        i = round(onset * sr)
        k = min(800, n - i)
        wave[i : i + k] += 0.5 * torch.randn(k, generator=gen) * torch.exp(-torch.arange(k) / 100.0)
    return wave


def test_shape_and_names():
    s = load_settings()
    fe = FeatureExtractor(s.audio, s.video.fps)
    wave = torch.zeros(s.audio.sample_rate * 3)
    out = fe(wave)
    assert out.shape == (90, num_features(s.audio)) == (frames_for(48000, 16000, 30), len(feature_names(s.audio)))
    batch = fe(torch.zeros(3, 48000))
    assert batch.shape == (3, 90, num_features(s.audio))


def test_onsets_land_on_their_frames():
    s = load_settings()
    fe = FeatureExtractor(s.audio, 30)
    times = [0.30, 0.965, 1.52, 2.21]  # not within 10 ms of a frame boundary (frame i spans i +- 0.5)
    feats = fe(_bursts(16000, 3.0, times))
    onset = feats[:, feature_names(s.audio).index("onset")]
    peaks = onset.topk(len(times)).indices.sort().values.tolist()
    assert peaks == [round(t * 30) for t in times]  # the frame nearest the onset


def test_silence_is_absolute_zero_and_loudness_is_kept():
    s = load_settings()
    fe = FeatureExtractor(s.audio, 30)
    names = feature_names(s.audio)
    quiet = fe(_bursts(16000, 1.0, [], tone=0.01))
    loud = fe(_bursts(16000, 1.0, [], tone=0.2))
    silent = fe(torch.zeros(16000))
    assert silent.abs().max() == 0
    for ch in ("rms", "loudness"):
        i = names.index(ch)
        assert loud[5:-5, i].mean() > quiet[5:-5, i].mean() > 0

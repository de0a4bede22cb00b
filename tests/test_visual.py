"""Visualizers: shapes and ranges, determinism, beat sync (motion peaks at onsets), calm silence, variety."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from synesthete.audio.features import FeatureExtractor, feature_names
from synesthete.audio.synth import synthesize
from synesthete.errors import InputError
from synesthete.metrics.picture import sharpness
from synesthete.metrics.quality import psnr
from synesthete.settings import load_settings
from synesthete.visual import VISUALIZERS, render_frames, sample_params
from synesthete.visual.compose import params_for

NAMES = sorted(VISUALIZERS)
BURST_FRAMES = [10, 25, 38, 75]  # noise bursts start on these frames
SILENCE = (45, 68)  # frames of digital silence


def _signal(settings, seconds: float = 3.0) -> torch.Tensor:
    """A steady two-tone hum with noise bursts at BURST_FRAMES and a silent stretch at SILENCE."""
    sr, fps = settings.audio.sample_rate, settings.video.fps
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(round(seconds * sr)) / sr
    wave = 0.2 * torch.sin(2 * math.pi * 110 * t) + 0.1 * torch.sin(2 * math.pi * 330 * t)
    for frame in BURST_FRAMES:
        start, length = round(frame / fps * sr), round(0.06 * sr)
        decay = torch.exp(-torch.arange(length) / (0.015 * sr))
        wave[start : start + length] += 0.6 * torch.randn(length, generator=gen) * decay
    wave[round(SILENCE[0] / fps * sr) : round(SILENCE[1] / fps * sr)] = 0
    return wave


def _features(settings, wave: torch.Tensor) -> torch.Tensor:
    return FeatureExtractor(settings.audio, settings.video.fps)(wave)  # [T, F]


def _only(settings, names: list[str], compose_prob: float = 0.0):
    return settings.updated(data={"visualizers": names, "compose_prob": compose_prob})


def _motion(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute frame-to-frame change [T]; entry i compares frame i with frame i-1 (entry 0 is 0)."""
    motion = torch.zeros(frames.shape[0])
    motion[1:] = (frames[1:] - frames[:-1]).abs().mean((1, 2, 3))
    return motion


@pytest.fixture(scope="module")
def clip():
    """Tiny settings with the burst signal and its features."""
    from synesthete.settings import load_settings

    settings = load_settings("tiny")
    wave = _signal(settings)
    return settings, wave, _features(settings, wave)


def test_registry_has_the_seed_three_and_more():
    assert {"pulse", "spectrum", "waveform"} <= set(VISUALIZERS)
    assert len(VISUALIZERS) >= 6
    for name, vis in VISUALIZERS.items():
        assert vis.name == name and vis.description


@pytest.mark.parametrize("name", [*NAMES, "composition"])
def test_shape_range_and_determinism(clip, name):
    settings, wave, feats = clip
    run = _only(settings, [], compose_prob=1.0) if name == "composition" else _only(settings, [name])
    params = sample_params(random.Random(7), run)
    if name == "composition":
        assert 2 <= len(params["layers"]) <= 3 and params["blend"] in ("add", "screen", "alpha")
    frames = render_frames(feats, wave, params, run)
    assert frames.shape == (feats.shape[0], 3, settings.video.height, settings.video.width)
    assert frames.dtype == torch.float32
    assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    assert frames.std() > 0.01  # not a blank picture
    # Params survive JSON and fully determine the video.
    again = render_frames(feats.clone(), wave.clone(), json.loads(json.dumps(params)), run)
    assert torch.equal(frames, again)
    # Same rng seed, same params.
    assert sample_params(random.Random(7), run) == params


@pytest.mark.parametrize("name", NAMES)
def test_motion_peaks_at_onsets(clip, name):
    settings, wave, feats = clip
    run = _only(settings, [name])
    quiet = torch.ones(feats.shape[0], dtype=torch.bool)
    for frame in BURST_FRAMES:
        quiet[frame - 1 : frame + 2] = False
    quiet[:2] = False
    quiet[SILENCE[0] - 1 : SILENCE[1] + 2] = False  # sound stopping and starting are onsets too
    for draw in range(3):
        motion = _motion(render_frames(feats, wave, sample_params(random.Random(draw), run), run))
        peaks = torch.stack([motion[f - 1 : f + 2].max() for f in BURST_FRAMES])  # +-1 frame
        baseline = motion[quiet].mean()
        assert peaks.mean() > 3 * baseline, (draw, peaks.tolist(), baseline.item())
        assert peaks.min() > 2 * baseline, (draw, peaks.tolist(), baseline.item())
        assert peaks.min() > motion[quiet].max(), (draw, peaks.tolist(), motion[quiet].max().item())


@pytest.mark.parametrize("name", NAMES)
def test_the_onset_channel_alone_moves_the_picture(clip, name):
    """Steady loudness and bands, onsets only: the beat reaction itself (not loudness) makes the peaks."""
    settings, wave, feats = clip
    run = _only(settings, [name])
    steady = feats[5].expand(feats.shape[0], -1).clone()  # a steady-hum frame, repeated
    onset = feature_names(settings.audio).index("onset")
    steady[:, onset] = 0.0
    steady[BURST_FRAMES, onset] = 1.3
    hum = torch.sin(2 * math.pi * 110 * torch.arange(wave.shape[0]) / settings.audio.sample_rate) * 0.2
    for draw in range(3):
        motion = _motion(render_frames(steady, hum, sample_params(random.Random(draw), run), run))
        quiet = torch.ones_like(motion, dtype=torch.bool)
        for frame in BURST_FRAMES:
            quiet[frame - 1 : frame + 2] = False
        peaks = torch.stack([motion[f - 1 : f + 2].max() for f in BURST_FRAMES])
        assert peaks.min() > 3 * motion[quiet].mean(), (draw, peaks.tolist(), motion[quiet].mean().item())


@pytest.mark.parametrize("name", NAMES)
def test_silence_is_calm(clip, name):
    settings, wave, feats = clip
    run = _only(settings, [name])
    params = sample_params(random.Random(3), run)
    # Digital silence from the start: a static picture.
    silent = torch.zeros_like(wave)
    still = _motion(render_frames(_features(settings, silent), silent, params, run))
    assert still.max() < 1e-6
    # After sound stops, the picture settles: the late part of the silent stretch barely moves.
    motion = _motion(render_frames(feats, wave, params, run))
    settled = motion[SILENCE[0] + 15 : SILENCE[1]].mean()
    sounding = motion[2 : SILENCE[0]].mean()
    assert settled < 0.1 * sounding, (settled.item(), sounding.item())


def test_no_two_visualizers_are_alike(clip):
    settings, wave, feats = clip
    videos = {}
    for name in NAMES:
        run = _only(settings, [name])
        videos[name] = render_frames(feats, wave, sample_params(random.Random(1), run), run)
    for a, b in itertools.combinations(NAMES, 2):
        assert (videos[a] - videos[b]).abs().mean() > 0.02, (a, b)
        motion_a, motion_b = _motion(videos[a]), _motion(videos[b])
        assert not torch.allclose(motion_a / motion_a.max(), motion_b / motion_b.max(), atol=1e-3), (a, b)


@pytest.mark.parametrize("bands", [8, 16, 32])
def test_spectrum_bars_follow_the_bands(tiny, bands):
    """A low hum lights the low (left) bars of a vertical spectrum; a high hiss lights the right ones."""
    settings = tiny.updated(data={"augment": False})
    sr = settings.audio.sample_rate
    t = torch.arange(sr) / sr
    params = sample_params(random.Random(0), _only(settings, ["spectrum"]))
    layer = params["layers"][0]["params"]
    layer.update(orientation="vertical", bands=bands, mirror=False)
    brightness = {}  # fraction of lit pixels in the (left, right) half
    for label, wave in {
        "low": 0.5 * torch.sin(2 * math.pi * 80 * t),
        "high": sum(0.1 * torch.sin(2 * math.pi * f * t) for f in (3000, 4500, 6000, 7500)),
    }.items():
        frames = render_frames(_features(settings, wave), wave, params, settings)
        lit = (frames - torch.tensor(layer["bg"])[:, None, None]).abs().sum(1) > 0.2  # [T, H, W] bar pixels
        half = settings.video.width // 2
        brightness[label] = (lit[..., :half].float().mean().item(), lit[..., half:].float().mean().item())
    assert brightness["low"][0] > 2 * brightness["low"][1], brightness
    assert brightness["high"][1] > 2 * brightness["high"][0], brightness


def test_flip_mirrors_the_picture(clip):
    settings, wave, feats = clip
    run = _only(settings, ["pulse"])
    params = sample_params(random.Random(5), run)
    params["augment"].update(flip_x=False, flip_y=False)
    plain = render_frames(feats, wave, params, run)
    params["augment"].update(flip_x=True, flip_y=True)
    flipped = render_frames(feats, wave, params, run)
    assert torch.allclose(flipped, plain.flip(-1, -2), atol=1e-4)


def test_sample_params_follows_the_settings(tiny):
    rng = random.Random(0)
    only = _only(tiny, ["tiles", "pulse"], compose_prob=0.0)
    draws = [sample_params(rng, only) for _ in range(30)]
    assert {d["layers"][0]["name"] for d in draws} == {"tiles", "pulse"}
    assert all(len(d["layers"]) == 1 for d in draws)
    always = _only(tiny, [], compose_prob=1.0)
    draws = [sample_params(rng, always) for _ in range(30)]
    assert {len(d["layers"]) for d in draws} == {2, 3}
    assert all(len({layer["name"] for layer in d["layers"]}) == len(d["layers"]) for d in draws)
    assert all(d["visualizer"] == "+".join(layer["name"] for layer in d["layers"]) for d in draws)
    plain = tiny.updated(data={"augment": False})
    aug = sample_params(rng, plain)["augment"]
    assert aug == {"flip_x": False, "flip_y": False, "hue": 0.0, "gains": [1.0, 1.0, 1.0]}
    with pytest.raises(InputError, match="nosuch"):
        sample_params(rng, _only(tiny, ["nosuch"]))


def test_a_name_listed_twice_is_drawn_twice_as_often(tiny):
    rng = random.Random(1)
    weighted = _only(tiny, ["pulse", "pulse", "pulse", "tiles"], compose_prob=0.0)
    names = [sample_params(rng, weighted)["layers"][0]["name"] for _ in range(400)]
    assert set(names) == {"pulse", "tiles"}
    assert 0.67 < names.count("pulse") / len(names) < 0.83  # 3 in 4
    # Compositions stay of different families: two names listed, so never more than two layers.
    stacked = _only(tiny, ["pulse", "pulse", "tiles"], compose_prob=1.0)
    draws = [[layer["name"] for layer in sample_params(rng, stacked)["layers"]] for _ in range(50)]
    assert all(sorted(d) == ["pulse", "tiles"] for d in draws)


def test_longer_and_empty_clips(clip):
    settings, wave, feats = clip
    params = sample_params(random.Random(2), _only(settings, [], compose_prob=1.0))
    assert render_frames(feats[:0], wave[:0], params, settings).shape == (0, 3, 32, 32)
    one = render_frames(feats[:1], wave[: settings.audio.sample_rate // 30], params, settings)
    assert one.shape == (1, 3, 32, 32) and torch.isfinite(one).all()


@pytest.mark.skipif(not (torch.cuda.is_available() or torch.backends.mps.is_available()), reason="no GPU")
def test_same_picture_on_the_accelerator(clip):
    settings, wave, feats = clip
    device = torch.device("cuda" if torch.cuda.is_available() else "mps")
    for name in NAMES:
        run = _only(settings, [name])
        params = sample_params(random.Random(4), run)
        cpu = render_frames(feats, wave, params, run)
        gpu = render_frames(feats.to(device), wave.to(device), params, run)
        assert gpu.device.type == device.type
        assert (gpu.cpu() - cpu).abs().mean() < 1e-3, name


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_visualizer_at_512_is_its_128_frame_drawn_finer(name):
    """The 512 frame, area-averaged to 128, is the 128 frame: line widths, sizes and trails are in relative
    units, so a larger canvas draws the same picture finer (what a high-resolution decoder would learn from).
    Most visualizers agree to 50 dB and more; the oscilloscope's steep strokes and the tiles' edges fall on
    other pixels at 512, and still agree to 28 dB."""
    settings = load_settings().updated(audio={"clip_seconds": 0.5})
    wave, _ = synthesize(5, settings, drums=True, silence=False, dropout=False)
    features = _features(settings, wave)
    big_settings = settings.updated(video={"height": 512, "width": 512})
    for look in range(2):
        params = params_for([name], random.Random(look), settings)
        small = render_frames(features, wave, params, settings)
        big = render_frames(features, wave, params, big_settings)
        assert big.shape[-2:] == (512, 512)
        assert psnr(F.interpolate(big, size=(128, 128), mode="area"), small) > 28.0, (name, look)
        assert sharpness(big) < sharpness(small)  # finer: the same edges over four times the pixels

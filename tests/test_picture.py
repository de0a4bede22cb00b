"""Picture metrics and the style critic: FSD, cut rate, seams, stability, sharpness, contact sheets."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import ROOT, assert_user_error, call_cli

from synesthete import media
from synesthete.checkpoint import load_critic, read_checkpoint, save_checkpoint
from synesthete.data import ClipStream, make_clip, seed_for
from synesthete.metrics import picture
from synesthete.render import window_layout
from synesthete.settings import load_settings
from synesthete.train.critic import gaussian_blur, h264_roundtrip

CRITIC = ROOT / "checkpoints" / "critic.pt"


@pytest.fixture(scope="module")
def critic():
    """The committed style critic."""
    return load_critic(CRITIC)


@pytest.fixture(scope="module")
def clips():
    """Four held-out clips at the shipped size (128x128, 3 s), each with its oracle frames."""
    settings = load_settings()
    return [make_clip(seed_for(i, settings, "heldout"), settings, drums=True) for i in range(4)]


@pytest.fixture(scope="module")
def outputs(critic, clips):
    """The committed critic's (family probabilities, features) of each clip's oracle frames."""
    return [critic.outputs(clip["frames"]) for clip in clips]


@pytest.mark.slow
def test_critic_trained_tiny_separates_two_families(tmp_path):
    """A tiny critic, trained for seconds on two visually distinct families, tells them apart."""
    from synesthete.train.critic import heldout_scores, train_critic

    settings = load_settings(
        "tiny", data={"visualizers": ["waveform", "tiles"], "compose_prob": 0.0},
        critic={"max_steps": 120, "heldout_clips": 8, "h264_prob": 0.3, "junk_prob": 0.0},
        train={"run_name": "critic", "image_every": 1000}, paths={"runs": tmp_path},
    )
    summary = train_critic(settings, export=tmp_path)
    critic = load_critic(tmp_path / "critic.pt")
    scores = heldout_scores(critic.network, settings, 8)
    assert set(scores["accuracy"]) == {"waveform", "tiles"}
    assert min(scores["accuracy"].values()) >= 0.8, scores["accuracy"]
    assert summary["steps"] == 120 and critic.cut_threshold > 0


@pytest.mark.slow
def test_fsd_is_zero_on_itself_and_grows_with_noise_and_blur(critic, clips):
    frames = torch.cat([c["frames"][::3] for c in clips]).float() / 255  # [T, 3, H, W]
    feats = critic.outputs(frames)[1]
    base = picture.frechet_distance(feats, feats)
    assert base == pytest.approx(0.0, abs=1e-6 * float(feats.var(0).sum()) + 1e-9)
    gen = torch.Generator().manual_seed(0)

    def fsd_of(x: torch.Tensor) -> float:
        return picture.frechet_distance(feats, critic.outputs(x.clamp(0, 1))[1])

    noise = [fsd_of(frames + s * torch.randn(frames.shape, generator=gen)) for s in (0.02, 0.08, 0.25)]
    blur = [fsd_of(gaussian_blur(frames, s)) for s in (0.7, 2.0, 5.0)]
    assert noise == sorted(noise) and noise[0] > base
    assert blur == sorted(blur) and blur[0] > base


@pytest.mark.slow
def test_fsd_references_the_oracle_itself_at_the_floor_and_another_look_above_it(critic, clips):
    """heldout_picture's references are scored as the model is: the oracle's own frames sit at the floor (1.0),
    the committed VAE's reconstructions of them just above it, the same songs drawn by the same visualizers in
    the render seed's look further above."""
    from synesthete.checkpoint import load_models
    from synesthete.eval import SEED_LOOK, VAE_ROUNDTRIP, heldout_picture
    from synesthete.eval.heldout import _seed_look_oracle, _vae_roundtrip

    settings = load_settings()
    frames = [clip["frames"] for clip in clips]
    other_look = _seed_look_oracle(clips, settings)
    assert all(a.shape == b.shape and not torch.equal(a, b) for a, b in zip(other_look, frames, strict=True))
    models = load_models(settings, ROOT / "checkpoints", "cpu")
    recon = [_vae_roundtrip(models, f, torch.device("cpu")) for f in frames]
    assert all(r.dtype == torch.uint8 and r.shape == f.shape for r, f in zip(recon, frames, strict=True))
    out = heldout_picture(critic, frames, clips, settings,
                          references={"itself": frames, SEED_LOOK: other_look, VAE_ROUNDTRIP: recon})
    ratios = out["fsd"]["references"]
    assert out["fsd"]["ratio_to_floor"] == pytest.approx(1.0, rel=1e-6)
    assert ratios["itself"] == pytest.approx(1.0, rel=1e-6)
    assert 1.0 < ratios[VAE_ROUNDTRIP] < ratios[SEED_LOOK]  # 1.11 and 1.50 here
    assert ratios[SEED_LOOK] > 1.2  # 1.50 on these 4 clips of 3 s; 5.2 on eval's 8 of 6 s


def test_cut_rate_is_low_on_oracle_video_and_high_when_shuffled_in_time(critic, outputs):
    threshold = critic.cut_threshold
    feats = [features for _, features in outputs]
    oracle = [picture.cut_rate(f, threshold) for f in feats]
    assert sum(oracle) / len(oracle) <= 0.03, oracle
    # The four clips back to back, shuffled in time: consecutive frames keep jumping between looks.
    video = torch.cat(feats)
    shuffled = video[torch.randperm(video.shape[0], generator=torch.Generator().manual_seed(1))]
    assert picture.cut_rate(video, threshold) <= 0.05
    assert picture.cut_rate(shuffled, threshold) >= 0.3


def test_critic_works_through_h264(critic, clips, outputs):
    """The critic names the same family on a clip before and after a lossy H.264 round trip."""
    agree = []
    for clip, (probs, _) in zip(clips, outputs, strict=True):
        clean = probs.argmax(1)
        coded = critic.outputs(h264_roundtrip(clip["frames"], 30, 30))[0].argmax(1)
        agree.append(float((clean == coded).float().mean()))
    assert min(agree) >= 0.9, agree


def test_h264_roundtrip_is_lossy_and_repeats():
    """The critic's H.264 augmentation is a pure function of the frames, so a critic run repeats exactly: the
    same frames give the same decoded frames every time, and they differ from the input. The frames are the tiny
    critic run's clip at stream position 62, which torchcodec's encoder coded differently in 3 of 40 tries."""
    settings = load_settings("tiny", data={"visualizers": ["waveform", "tiles"], "compose_prob": 0.0})
    frames = next(iter(ClipStream(settings, split="train", start_index=62, rank=0, world_size=1)))["frames"]
    coded = [h264_roundtrip(frames, 30, 30) for _ in range(40)]
    assert coded[0].shape == frames.shape and coded[0].dtype == torch.uint8
    assert all(torch.equal(c, coded[0]) for c in coded[1:])
    assert 0 < (coded[0].float() - frames.float()).abs().mean() < 20


def test_seam_score_is_one_on_oracle_video_and_high_with_jumps(clips):
    frames = torch.cat([c["frames"] for c in clips[:2]])  # [180, 3, H, W]
    joins = window_layout(frames.shape[0], window=8, overlap=2, exemplar=False).joins()
    assert joins[:3] == [8, 14, 20]
    assert 0.7 <= picture.seam_score(frames, joins) <= 1.3
    # Every window drawn from another clip's time: the picture jumps at each join and nowhere else.
    jumpy = frames.clone().float() / 255
    for n, j in enumerate(joins):
        jumpy[j : j + 6] = (jumpy[j : j + 6] + (0.3 if n % 2 else -0.3)).clamp(0, 1)
    assert picture.seam_score(jumpy, joins) > 2.0


def test_stability_recognisability_and_sharpness_on_oracle(clips, outputs):
    from synesthete.styles import clip_style, families

    for clip, (probs, _) in zip(clips, outputs, strict=True):
        wanted = [families().index(n) for n in clip_style(clip["meta"])]
        assert picture.style_stability(probs) >= 0.8
        assert picture.recognisability(probs, wanted)["on_style"] >= 0.8
    frames = clips[0]["frames"]
    assert picture.sharpness(gaussian_blur(frames.float() / 255, 2.0)) < 0.8 * picture.sharpness(frames)


def test_held_where_truth_shows_counts_only_the_frames_the_truth_makes_recognisable(clips, outputs):
    from synesthete.styles import clip_style, families

    probs = outputs[0][0]
    family = families().index(clip_style(clips[0]["meta"])[0])
    assert picture.held_where_truth_shows(probs, probs, family) == 1.0  # the truth against itself
    def moved(by: int) -> torch.Tensor:  # every frame read as the family ``by`` places on from its own
        return torch.roll(torch.eye(probs.shape[1]), by, 0)[probs.argmax(1)]

    assert picture.held_where_truth_shows(moved(1), probs, family) == 0.0
    half = len(probs) // 2
    truth, render = probs.clone(), probs.clone()
    truth[:half] = moved(1)[:half]  # the truth reads as another family in its first half (a quiet stretch) ...
    render[:half] = moved(2)[:half]  # ... where the render is off style too: those frames are not counted
    assert picture.held_where_truth_shows(render, truth, family) == 1.0
    assert picture.style_stability(render) < 1.0
    never = torch.zeros_like(probs)
    never[:, (family + 1) % probs.shape[1]] = 1
    assert math.isnan(picture.held_where_truth_shows(probs, never, family))  # the truth never shows it


def test_aperiodic_probe_has_no_tempo():
    wave = picture.aperiodic_probe(20.0, 16000, seed=3)
    assert wave.shape == (320000,) and wave.abs().max() <= 1
    assert torch.equal(wave, picture.aperiodic_probe(20.0, 16000, seed=3))
    loud = (wave.view(-1, 160).pow(2).mean(1) > 0.01).float()  # 10 ms frames with a hit
    starts = torch.nonzero(loud[1:] > loud[:-1]).flatten().float()
    gaps = starts.diff()
    assert len(starts) >= 20
    assert gaps.std() / gaps.mean() > 0.5  # Poisson gaps, nothing like a steady beat


def test_sheet_png_has_the_expected_size(tmp_path):
    rows = [torch.rand(5, 3, 16, 20) for _ in range(4)]
    path = picture.write_sheet(tmp_path / "s.png", rows, gap=2, group=2)
    import matplotlib.pyplot as plt

    image = plt.imread(path)
    assert image.shape[:2] == (4 * 16 + 3 * 2 + 1 * 6, 5 * 20 + 4 * 2)
    assert image[:16, :20, :3] == pytest.approx(rows[0][0].permute(1, 2, 0).numpy(), abs=1 / 255 + 1e-6)


@pytest.mark.slow
def test_eval_video_reports_picture_metrics_and_writes_a_sheet(tmp_path, clips):
    video = tmp_path / "oracle.mp4"
    media.write_video(video, clips[0]["frames"].float() / 255, 30, audio=clips[0]["audio"][None], sample_rate=16000)
    sheet, out = tmp_path / "sheet.png", tmp_path / "r.json"
    proc = call_cli("eval", "--video", str(video), "--sheet", str(sheet), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pic = json.loads(out.read_text())["picture"]
    assert set(pic) >= {"recognisability", "cut_rate", "style_stability", "sharpness"}
    assert pic["cut_rate"] <= 0.05 and pic["style_stability"] >= 0.8
    import matplotlib.pyplot as plt

    assert plt.imread(sheet).shape[:2] == (4 * 128 + 3 * 2, 8 * 128 + 7 * 2)  # 4 rows of 8 frames


def test_bad_critic_and_sheet_inputs_are_one_clear_line(tmp_path, clips):
    video = tmp_path / "v.mp4"
    media.write_video(video, clips[1]["frames"][:30].float() / 255, 30, audio=clips[1]["audio"][None, :16000],
                      sample_rate=16000)
    missing = call_cli("eval", "--video", str(video), "--critic", str(tmp_path / "nope.pt"))
    assert_user_error(missing, "no critic checkpoint", "train critic")
    wrong_kind = call_cli("eval", "--video", str(video), "--critic", str(ROOT / "checkpoints" / "vae.pt"))
    assert_user_error(wrong_kind, "is a vae checkpoint")
    foreign = read_checkpoint(CRITIC)
    foreign["families"] = ["pulse", "spectrum"]
    save_checkpoint(foreign, tmp_path / "foreign.pt")
    assert_user_error(call_cli("eval", "--video", str(video), "--critic", str(tmp_path / "foreign.pt")),
                      "trained on the families")
    assert_user_error(call_cli("eval", "--video", str(video), "--sheet", str(tmp_path / "s.jpg")), ".png")
    assert not (tmp_path / "s.jpg").exists()

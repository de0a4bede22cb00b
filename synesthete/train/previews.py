"""What a diffusion run shows while it trains (main rank only): sample strips of fixed held-out windows every
``train.image_every`` steps, and every ``train.eval_every`` steps the held-out evals of ``synesthete eval``
(sync metrics against the clips' own frames, picture metrics and a contact sheet with the style critic, and
the per-family figures of ``eval --families``), all from the EMA network."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synesthete.checkpoint import Models, load_critic
from synesthete.data import make_clip, music_library, one_thread, seed_for
from synesthete.errors import CheckpointError
from synesthete.eval import clip_look, evaluate_families, heldout_clips, heldout_picture, heldout_sheet_rows
from synesthete.metrics import sync_metrics
from synesthete.metrics.picture import compose_sheet
from synesthete.metrics.quality import nanmean
from synesthete.models.critic import Critic
from synesthete.render import generate_frames
from synesthete.sampling import sample
from synesthete.settings import Settings
from synesthete.styles import clip_style, style_vector
from synesthete.train.loop import TrainingRun, image_row


def heldout_windows(settings: Settings, count: int, window: int, ctx: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor]:
    """Fixed held-out windows of ``window`` frames and ``ctx`` feature frames of context on each side (one per
    held-out clip, from its middle): frames uint8 [n, W, 3, H, W], features [n, W + 2ctx, F], styles [n, S]."""
    frames, feats, styles = [], [], []
    for i in range(count):
        with one_thread():
            clip = make_clip(seed_for(i, settings, "heldout"), settings)
        s = (clip["frames"].shape[0] - window) // 2
        frames.append(clip["frames"][s : s + window])
        feats.append(F.pad(clip["features"], (0, 0, ctx, ctx))[s : s + window + 2 * ctx])
        styles.append(style_vector(clip_style(clip["meta"])))
    return torch.stack(frames), torch.stack(feats), torch.stack(styles)


@torch.no_grad()
def sample_frames(
    models: Models, features: torch.Tensor, settings: Settings, seed: int, style: torch.Tensor | None = None
) -> torch.Tensor:
    """Sample windows for features [n, W + 2ctx, F] (styles [n, S]) with the EMA, decoded: [n, W, 3, H, W]."""
    device = models.latent_mean.device
    cfg = models.dit.config
    n = features.shape[0]
    generator = torch.Generator(device).manual_seed(seed)
    shape = (n, cfg.window, cfg.latent_channels, cfg.latent_height, cfg.latent_width)
    latents = sample(models.dit, features.to(device), shape, settings.sampling, generator=generator, style=style)
    frames = models.decode(latents.flatten(0, 1)).float()  # [n * W, 3, H, W]
    return frames.view(n, cfg.window, *frames.shape[1:])


def log_samples(run: TrainingRun, models: Models, heldout: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                step: int) -> None:
    """Frame strips (each held-out window: truth above, sample below) and the shuffled-audio pixel gap."""
    truth, features, styles = heldout
    seed = run.settings.train.seed
    frames = sample_frames(models, features, run.settings, seed, styles).cpu()
    rows = []
    for i in range(truth.shape[0]):
        rows += [image_row(truth[i].float() / 255), image_row(frames[i])]
    run.image("diffusion/samples", torch.cat(rows, dim=-2), step)
    if truth.shape[0] > 1:
        # Same noise, another window's audio: how much the picture depends on the sound (the seed's metric).
        shuffled = sample_frames(models, features.roll(1, dims=0), run.settings, seed, styles).cpu()
        run.scalar("diffusion/heldout_shuffle_pixel_diff", float((frames - shuffled).abs().mean()), step)


def heldout_sync_metrics(videos: list[torch.Tensor] | None, clips: list[dict], settings: Settings) -> dict[str, float]:
    """Eval hook: sync metrics (``metrics.sync_metrics``) of held-out clips' videos, averaged.

    ``videos`` are the EMA's renders of ``clips`` (``render_heldout``); ``None`` scores the clips' own
    procedural frames: the "oracle" a perfect model would reach. The clips are ``eval.heldout_clips``
    and the renders use the same noise seed and style as ``synesthete eval``, so these figures are that
    command's "model" row for the first ``train.eval_clips`` clips.
    """
    totals: dict[str, list[float]] = {}
    for i, clip in enumerate(clips):
        frames = clip["frames"] if videos is None else videos[i]
        values = sync_metrics(frames, clip["audio"], settings.audio.sample_rate, settings.video.fps, settings,
                              beats=clip["meta"]["beats"])  # frames [T, 3, H, W]
        for key, value in values.items():
            totals.setdefault(key, []).append(value)
    return {key: nanmean(values) for key, values in totals.items()}


def render_heldout(models: Models, clips: list[dict], settings: Settings) -> list[torch.Tensor]:
    """The EMA's renders [T, 3, H, W] of held-out clips, each in its true style and look, as ``synesthete eval``
    renders them."""
    return [generate_frames(models, clip["audio"], settings, style=clip_style(clip["meta"]),
                            look=clip_look(clip, settings)) for clip in clips]


def log_picture(run: TrainingRun, critic: Critic, renders: list[torch.Tensor], clips: list[dict], step: int) -> None:
    """Eval hook: FSD, recognisability and cut rate of the renders (``eval.heldout_picture``), and a
    contact sheet image (model row above oracle row per clip)."""
    picture = heldout_picture(critic, renders, clips, run.settings)
    run.scalar("picture/fsd", picture["fsd"]["model"], step)
    run.scalar("picture/fsd_over_floor", picture["fsd"]["ratio_to_floor"], step)
    for key in ("recognisability", "on_style", "cut_rate", "style_stability"):
        run.scalar(f"picture/{key}", picture["model"][key], step)
    run.scalar("picture/sharpness_over_oracle", picture["sharpness_ratio"], step)
    videos = {"model": renders, "oracle": [clip["frames"] for clip in clips]}
    run.image("picture/contact_sheet", compose_sheet(heldout_sheet_rows(videos, run.settings)), step)


def log_families(run: TrainingRun, models: Models, critic: Critic, step: int) -> None:
    """Eval hook: the per-family figures of ``eval --families`` (one excerpt per family and source, no long
    render), on the music folders' held-out songs too when the run trains on real music."""
    settings = run.settings.updated(eval={"family_clips": 1, "long_seconds": 0})
    library = music_library(settings)
    if library is not None and not library.songs("heldout"):
        library = None
    result = evaluate_families(models, critic, settings, library, progress=False)
    for family, entry in result["families"].items():
        for source in result["sources"]:
            part = entry[source]
            run.scalar(f"families_{source}/{family}_on_style", part["model"]["on_style"], step)
            run.scalar(f"families_{source}/{family}_cut_rate_over_visualizers", part["cut_rate_ratio"], step)
            run.scalar(f"families_{source}/{family}_fsd_over_floor", part["fsd_ratio_to_floor"], step)


class Previews:
    """The main rank's image logs and held-out evals of a diffusion run, from ``models`` (the EMA)."""

    def __init__(self, run: TrainingRun, models: Models) -> None:
        self.run, self.models = run, models
        settings = run.settings
        cfg = models.config
        self.heldout = heldout_windows(settings, settings.train.preview_samples, cfg.window, cfg.audio_context)
        self.reference: dict[str, float] = {}  # sync metrics of the held-out clips' own frames, measured once
        self.clips: list[dict] = []
        self.critic = None
        try:
            self.critic = load_critic(settings.critic_path, run.device)
        except CheckpointError as exc:  # picture metrics are optional here; sync metrics still log
            run.print(f"held-out evals log sync metrics only: {exc}")

    def after_step(self, step: int) -> None:
        """Log sample strips and run the held-out evals when ``step`` is due for them."""
        settings = self.run.settings
        ts = settings.train
        if step % ts.image_every == 0 or step == settings.diffusion.max_steps:
            log_samples(self.run, self.models, self.heldout, step)
        if step % ts.eval_every == 0:
            self.evaluate(step)

    def evaluate(self, step: int) -> None:
        """The held-out evals: sync metrics beside the oracle's, and with a critic picture and family figures."""
        run, settings = self.run, self.run.settings
        if not self.reference:
            with one_thread():
                self.clips = heldout_clips(settings, settings.train.eval_clips)
            self.reference = heldout_sync_metrics(None, self.clips, settings)
        renders = render_heldout(self.models, self.clips, settings)
        for key, value in heldout_sync_metrics(renders, self.clips, settings).items():
            run.scalar(f"eval/{key}", value, step)
            run.scalar(f"eval_reference/{key}", self.reference[key], step)
        if self.critic is not None:
            log_picture(run, self.critic, renders, self.clips, step)
            log_families(run, self.models, self.critic, step)

"""`synesthete train diffusion`: the Brain learns to denoise windows of latents given their audio.

Data path of one step::

    clip pool (data.ClipPool)       the last train.clip_pool clips of the stream, train.fresh_clips new per step
    -> batch_size random windows    random clip, random start s; W frames + features [s - ctx, s + W + ctx)
                                    (features zero-padded at the clip edges, as render pads a song)
    -> frozen VAE encoder (mean)    latents [B, W, C, h, w], scaled to unit variance per channel with the
                                    latent statistics measured once at the start (kept in the checkpoint)
    -> DDPM objective               x_t = q_sample(x0, noise, t), target = eps or v (sampling.NoiseSchedule)

Audio pressure (docs/model_architecture.md):

* classifier-free guidance dropout: ``diffusion.cfg_dropout`` of the windows get the null audio embedding;
* shuffled-audio hinge: the same noisy input and timestep are denoised a second time with the features of
  the next window of the batch (from another random clip of the pool), and
  ``relu(L_correct + margin - L_shuffled)`` is added per window, so ignoring the audio costs loss. Both
  halves run in one batched forward pass;
* silence and drop-out clips come from the data engine (``data.silence_prob``, ``data.dropout_prob``).

An EMA of the weights (a frozen copy in eval mode, updated every step) is what previews, eval and the
exported checkpoint use.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.checkpoint import (
    Models,
    build_model,
    check_config,
    checkpoint_config,
    export_checkpoint,
    load_checkpoint,
    load_vae,
    make_checkpoint,
    raw_state_dict,
    read_checkpoint,
    vae_fingerprint,
    warm_start,
)
from synesthete.data import one_thread
from synesthete.device import autocast
from synesthete.errors import CheckpointError
from synesthete.media import to_unit
from synesthete.metrics.quality import nanmean
from synesthete.models import count_params
from synesthete.models.dit import DiT
from synesthete.sampling import NoiseSchedule, randn_like, sample
from synesthete.settings import Settings
from synesthete.train.loop import LATEST, TrainingRun, image_row, make_optimizer, resolve_resume

ENCODE_CHUNK = 256  # frames per VAE forward when measuring latent statistics (bounds memory)
EMA_WARMUP = 10  # EMA decay ramps as (1 + step) / (EMA_WARMUP + step) up to diffusion.ema_decay


# --------------------------------------------------------------------------------------------- latents
@torch.no_grad()
def encode_frames(vae: nn.Module, frames: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """uint8 frames [N, 3, H, W] -> posterior-mean latents [N, C, h, w] (float32), in chunks."""
    out = []
    for chunk in frames.split(ENCODE_CHUNK):
        with autocast(device, amp):
            mean, _ = vae.encode(to_unit(chunk, device))
        out.append(mean.float())
    return torch.cat(out)


@torch.no_grad()
def latent_stats(vae: nn.Module, settings: Settings, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-channel mean and std [C] of the VAE latents of the first ``diffusion.latent_stat_clips`` clips.

    Every rank measures the same clips, so the statistics agree across a torchrun job without a broadcast.
    """
    from synesthete.data import make_clip, seed_for

    latents = []
    for i in range(settings.diffusion.latent_stat_clips):
        with one_thread():
            clip = make_clip(seed_for(i, settings, "train"), settings)
        latents.append(encode_frames(vae, clip["frames"], device, settings.train.amp))  # [T, C, h, w]
    z = torch.cat(latents).transpose(0, 1).flatten(1)  # [C, N*h*w]
    return {"mean": z.mean(1).cpu(), "std": z.std(1).clamp(min=1e-6).cpu()}


def normalize(z: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Latents [..., C, h, w] -> unit variance per channel."""
    mean = stats["mean"].to(z.device).view(-1, 1, 1)
    std = stats["std"].to(z.device).view(-1, 1, 1)
    return (z - mean) / std


# --------------------------------------------------------------------------------------------- EMA
@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model (parameters); buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def ema_decay(step: int, decay: float) -> float:
    """EMA decay at ``step``: warms up so short runs are not dominated by the random initialisation."""
    return min(decay, (1 + step) / (EMA_WARMUP + step))


# --------------------------------------------------------------------------------------------- loss
def context_masks(batch: int, window: int, settings: Settings, generator: torch.Generator) -> torch.Tensor:
    """[B, W] bool: the first k frames of each window are clean context, k uniform in 0..max_context; a
    ``diffusion.bridge_prob`` share of the windows also has its last j frames as context (a bridge), j uniform
    in 1..max_context, capped so that at least one frame is left to generate."""
    ds = settings.diffusion
    most = min(ds.max_context, window - 1)
    k = torch.randint(0, most + 1, (batch,), generator=generator)
    positions = torch.arange(window)[None]
    mask = positions < k[:, None]
    if ds.bridge_prob > 0 and ds.max_context > 0:
        bridge = torch.rand(batch, generator=generator) < ds.bridge_prob
        room = (window - 1 - k).clamp(max=ds.max_context)  # trailing frames that still leave one to generate
        j = (torch.rand(batch, generator=generator) * room).floor().long() + 1  # uniform in 1..room
        j = torch.where(bridge & (room > 0), j, torch.zeros_like(j))
        mask |= positions >= window - j[:, None]
    return mask


@torch.no_grad()
def predicted_context(
    predictor: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator,
    style: torch.Tensor | None = None,
) -> torch.Tensor:
    """The network's one-step estimate of x0 [B, W, C, h, w] from a copy noised to a timestep t uniform in
    ``diffusion.predicted_context_t`` (shares of the schedule), with the window's audio and style: soft,
    drifting from the style the way a long render's frames do. Given as context with the true continuation as
    the target, it teaches the DiT to recover the look instead of continuing the drift.
    """
    ds = settings.diffusion
    b, device = x0.shape[0], x0.device
    lo, hi = (round(share * (ds.num_train_timesteps - 1)) for share in ds.predicted_context_t)
    t = torch.randint(min(lo, hi), max(lo, hi) + 1, (b,), generator=generator).to(device)
    x = schedule.q_sample(x0, randn_like(x0, generator), t)
    keep = torch.zeros(b, dtype=torch.bool, device=device)
    out = predictor(x, t, features, keep, style=style, drop_style=keep if style is not None else None).float()
    return schedule.predict_x0(x, t, out)


def diffusion_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator,
    style: torch.Tensor | None = None,
    predictor: nn.Module | None = None,
    anchors: torch.Tensor | None = None,
    teacher: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """DDPM loss + CFG dropouts + clean context + shuffled-audio hinge, for x0 [B, W, C, h, w], features
    [B, W + 2ctx, F] and multi-hot styles [B, S].

    A random number of leading frames per window, and in some windows trailing frames too
    (``context_masks``), are given as context, noised to a
    timestep uniform in 0..``context_noise_max`` of the schedule (0: exactly clean); the loss covers only the frames to
    generate. With ``predictor`` (the EMA network) and ``diffusion.predicted_context`` > 0, that share of the
    windows with context take their context frames from ``predicted_context`` instead of the true latents.
    With ``anchors`` (latents [B, C, h, w] of another moment of each window's clip), ``diffusion.anchor_prob``
    of the windows with 2 or more leading context frames show their anchor as the first context frame, as render's
    anchored context does (``render.anchor``).
    Audio and style are each dropped on their own
    (``cfg_dropout``, ``style_dropout``). With ``teacher`` (guidance distillation; ``model`` takes the guidance
    scale, ``config.guidance_embed``), each window draws an audio guidance scale w uniform in
    ``diffusion.distill_guidance`` and the target is the teacher's classifier-free-guided output at w for the
    same inputs, e(a) + (w - 1) (e(a) - e(0)), instead of the true noise (or v).
    Returns (loss, logs, per-window correct-audio MSE [B], timesteps [B]).
    """
    ds = settings.diffusion
    b, w, device = x0.shape[0], x0.shape[1], x0.device
    noise = randn_like(x0, generator)
    t = torch.randint(0, ds.num_train_timesteps, (b,), generator=generator).to(device)
    drop = (torch.rand(b, generator=generator) < ds.cfg_dropout).to(device)
    drop_style = (torch.rand(b, generator=generator) < ds.style_dropout).to(device)
    ctx = context_masks(b, w, settings, generator).to(device)  # [B, W]
    ctx5 = ctx.view(b, w, 1, 1, 1)
    # Context frames are noised to their own small timestep (0 = exactly clean), told to the network.
    most_ctx = round(ds.context_noise_max * (ds.num_train_timesteps - 1))
    t_ctx = torch.randint(0, most_ctx + 1, (b,), generator=generator).to(device)
    ctx_noise = torch.randn(x0.shape, generator=generator).to(device)
    source = x0  # what the context frames show
    if predictor is not None and ds.predicted_context > 0:
        use = ((torch.rand(b, generator=generator) < ds.predicted_context).to(device) & ctx.any(1))
        if use.any():
            guess = predicted_context(predictor, schedule, x0[use], features[use], settings, generator,
                                      style[use] if style is not None else None)
            source = x0.clone()
            source[use] = guess.to(x0.dtype)
    if anchors is not None and ds.anchor_prob > 0:
        leading = ctx.long().cumprod(1).sum(1)  # context frames at the start of each window
        anchored = ((torch.rand(b, generator=generator) < ds.anchor_prob).to(device) & (leading >= 2))
        if anchored.any():
            source = source.clone() if source is x0 else source
            source[anchored, 0] = anchors[anchored].to(x0.dtype)
    x_ctx = torch.where((t_ctx > 0).view(b, 1, 1, 1, 1), schedule.q_sample(source, ctx_noise, t_ctx), source)
    x_t = torch.where(ctx5, x_ctx, schedule.q_sample(x0, noise, t))
    target = schedule.target(x0, noise, t)
    w_guide = None
    if teacher is not None:
        low, high = ds.distill_guidance
        w_guide = (low + (high - low) * torch.rand(b, generator=generator)).to(device)  # [B]
        target = guided_target(teacher, x_t, t, features, drop, w_guide, style, drop_style, ctx, t_ctx)
    gen_frames = (~ctx).float()  # [B, W]: frames the loss covers (at least one per window)

    def window_mse(pred: torch.Tensor) -> torch.Tensor:
        per_frame = (pred - target).pow(2).flatten(2).mean(2)  # [B, W]
        return (per_frame * gen_frames).sum(1) / gen_frames.sum(1)  # [B]

    use_hinge = ds.hinge_weight > 0 and b > 1
    two = (lambda v: torch.cat([v, v])) if use_hinge else (lambda v: v)
    feats_in = torch.cat([features, features.roll(1, dims=0)]) if use_hinge else features
    # One batched forward: first half with the window's own audio, second half with the next window's.
    extra = {"guidance": two(w_guide)} if w_guide is not None else {}
    pred = model(two(x_t), two(t), feats_in, two(drop), style=two(style) if style is not None else None,
                 drop_style=two(drop_style), context_mask=two(ctx), context_t=two(t_ctx), **extra).float()
    if use_hinge:
        pred, pred_shuffled = pred.chunk(2)
    mse = window_mse(pred)  # [B]
    loss = mse.mean()
    logs: dict[str, torch.Tensor] = {"mse": mse.detach().mean()}
    if use_hinge:
        mse_shuffled = window_mse(pred_shuffled)  # [B]
        keep = ~drop  # with the audio dropped both halves see the null embedding: nothing to compare
        if keep.any():
            hinge = F.relu(mse[keep] + ds.hinge_margin - mse_shuffled[keep]).mean()
            logs["mse_shuffled"] = mse_shuffled[keep].detach().mean()
            logs["shuffle_gap"] = (mse_shuffled[keep] - mse[keep]).detach().mean()
        else:
            hinge = mse.new_zeros(())
            logs["mse_shuffled"] = logs["mse"]
            logs["shuffle_gap"] = mse.new_zeros(())
        logs["hinge"] = hinge.detach()
        loss = loss + ds.hinge_weight * hinge
    return loss, logs, mse.detach(), t


@torch.no_grad()
def guided_target(
    teacher: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    features: torch.Tensor,
    drop: torch.Tensor,
    w: torch.Tensor,
    style: torch.Tensor | None,
    drop_style: torch.Tensor,
    ctx: torch.Tensor,
    t_ctx: torch.Tensor,
) -> torch.Tensor:
    """The teacher's classifier-free-guided output [B, W, C, h, w] at audio scales ``w`` [B]: its conditional
    and audio-dropped passes in one batched forward, as ``sampling.sample`` runs them. Windows whose audio is
    dropped (``drop``) get the unconditional output, which guidance leaves as it is."""
    two = lambda v: torch.cat([v, v])  # noqa: E731
    drop_in = torch.cat([drop, torch.ones_like(drop)])
    out = teacher(two(x_t), two(t), two(features), drop_in, style=two(style) if style is not None else None,
                  drop_style=two(drop_style), context_mask=two(ctx), context_t=two(t_ctx)).float()
    cond, uncond = out.chunk(2)
    return cond + (w.view(-1, *([1] * (cond.ndim - 1))) - 1) * (cond - uncond)


class TimestepBuckets:
    """Correct-audio MSE averaged per timestep bucket between two logs (the most telling diffusion diagnostic)."""

    def __init__(self, buckets: int, timesteps: int) -> None:
        self.buckets, self.timesteps = buckets, timesteps
        self.sums = torch.zeros(buckets, dtype=torch.float64)
        self.counts = torch.zeros(buckets, dtype=torch.float64)

    def add(self, mse: torch.Tensor, t: torch.Tensor) -> None:
        """Accumulate per-window MSE [B] by timestep [B]."""
        idx = (t.cpu() * self.buckets // self.timesteps).clamp(max=self.buckets - 1)
        self.sums.index_add_(0, idx, mse.cpu().double())
        self.counts.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float64))

    def log(self, run: TrainingRun, step: int) -> None:
        """Write diffusion/mse_t<lo>-<hi> for every bucket that saw a sample, then reset."""
        width = self.timesteps / self.buckets
        for k in range(self.buckets):
            if self.counts[k] > 0:
                lo, hi = round(k * width), round((k + 1) * width) - 1
                run.scalar(f"diffusion_by_timestep/mse_t{lo:04d}-{hi:04d}", float(self.sums[k] / self.counts[k]), step)
        self.sums.zero_()
        self.counts.zero_()


# --------------------------------------------------------------------------------------------- previews
def heldout_windows(settings: Settings, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed held-out windows (one per held-out clip, from its middle): frames uint8 [n, W, 3, H, W], features
    [n, W + 2ctx, F] and styles [n, S]."""
    from synesthete.data import make_clip, seed_for
    from synesthete.styles import clip_style, style_vector

    window, ctx = settings.diffusion.window, settings.diffusion.audio_context
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
    latents = sample(models.dit, features.to(device), shape, settings.diffusion, generator=generator, style=style)
    frames = models.decode(latents.flatten(0, 1)).float()  # [n * W, 3, H, W]
    return frames.view(n, cfg.window, *frames.shape[1:])


def log_samples(run: TrainingRun, models: Models, heldout: tuple[torch.Tensor, torch.Tensor], step: int) -> None:
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
    procedural frames: the "oracle" a perfect model would reach. The clips are ``evaluate.heldout_clips``
    and the renders use the same noise seed and style as ``synesthete eval``, so these figures are that
    command's "model" row for the first ``train.eval_clips`` clips.
    """
    from synesthete.metrics import sync_metrics

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
    from synesthete.evaluate import clip_look
    from synesthete.render import generate_frames
    from synesthete.styles import clip_style

    return [generate_frames(models, clip["audio"], settings, style=clip_style(clip["meta"]),
                            look=clip_look(clip, settings)) for clip in clips]


def log_picture(run: TrainingRun, critic: Any, renders: list[torch.Tensor], clips: list[dict], step: int) -> None:
    """Eval hook: FSD, recognisability and cut rate of the renders (``evaluate.heldout_picture``), and a
    contact sheet image (model row above oracle row per clip)."""
    from synesthete.evaluate import heldout_picture, heldout_sheet_rows
    from synesthete.metrics.picture import compose_sheet

    picture = heldout_picture(critic, renders, clips, run.settings)
    run.scalar("picture/fsd", picture["fsd"]["model"], step)
    run.scalar("picture/fsd_over_floor", picture["fsd"]["ratio_to_floor"], step)
    for key in ("recognisability", "on_style", "cut_rate", "style_stability"):
        run.scalar(f"picture/{key}", picture["model"][key], step)
    run.scalar("picture/sharpness_over_oracle", picture["sharpness_ratio"], step)
    videos = {"model": renders, "oracle": [clip["frames"] for clip in clips]}
    run.image("picture/contact_sheet", compose_sheet(heldout_sheet_rows(videos, run.settings)), step)


def log_families(run: TrainingRun, models: Models, critic: Any, step: int) -> None:
    """Eval hook: the per-family figures of ``eval --families`` (one excerpt per family and source, no long
    render), on the music folders' held-out songs too when the run trains on real music."""
    from synesthete.data import music_library
    from synesthete.family_eval import evaluate_families

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


# --------------------------------------------------------------------------------------------- trainer
def train_diffusion(
    settings: Settings,
    vae_path: str | Path | None = None,
    resume: str | Path | None = None,
    export: str | Path | None = None,
    init: str | Path | None = None,
    teacher: str | Path | None = None,
) -> dict[str, Any]:
    """Train the DiT on frozen-VAE latents under runs/<run-name>/; optionally export ``export``/diffusion.pt.

    ``init`` warm-starts a new run from a diffusion checkpoint (e.g. the committed default): its weights
    (EMA if present) and latent statistics are taken where shapes allow, and parameters it lacks (new
    conditioning) keep their zero initialisation. The optimizer, schedule and data stream start fresh.

    ``teacher`` (a diffusion checkpoint) makes the run a guidance distillation: the student takes the audio
    guidance scale as an input (``diffusion.guidance_embed`` is set) and learns the teacher's guided output
    (``diffusion_loss``), so that sampling needs one pass per step instead of two. Without ``init`` the
    student starts from the teacher's weights. A resumed distillation finds its teacher in its checkpoint.
    """
    teacher_ckpt = None
    if resume is not None and teacher is None:  # the run's settings may not say guidance_embed: ask its checkpoint
        stored = read_checkpoint(resolve_resume(resume)).get("teacher")
        teacher = Path(stored) if stored else None
    if teacher is not None:
        teacher_ckpt = load_checkpoint(teacher, "diffusion")
        checkpoint_config(teacher_ckpt, teacher)  # a config this synesthete cannot run fails before the run starts
        # The student learns on its teacher's noise law: x_t is noised as the teacher was trained.
        settings = settings.updated(diffusion={"guidance_embed": True})
        if init is None and resume is None:
            init = teacher
    ds, ts = settings.diffusion, settings.train
    vae_path = Path(vae_path) if vae_path is not None else Path(settings.paths.checkpoints) / "vae.pt"
    if not vae_path.exists():
        raise CheckpointError(
            f"no VAE checkpoint at {vae_path}: train one first (`synesthete train vae --export "
            f"{settings.paths.checkpoints}`) or pass --vae PATH"
        )
    init_ckpt = None
    if init is not None:
        if resume is not None:
            raise CheckpointError("--init starts a new run from weights; --resume continues a run: pass one")
        # A student that starts from its teacher reads the file once.
        init_ckpt = teacher_ckpt if init == teacher else load_checkpoint(init, "diffusion")
    with TrainingRun("diffusion", settings, resume) as run:
        device = run.device
        vae, vae_ckpt = load_vae(vae_path, device)
        frame = (settings.video.height, settings.video.width)
        if (vae.config.height, vae.config.width) != frame:
            raise CheckpointError(
                f"{vae_path} encodes {vae.config.width}x{vae.config.height} frames, the settings make "
                f"{frame[1]}x{frame[0]}: set video.width and video.height to the VAE's (SYNESTHETE_VIDEO__WIDTH="
                f"{vae.config.width} SYNESTHETE_VIDEO__HEIGHT={vae.config.height}), or pass another --vae"
            )
        fingerprint = vae_fingerprint(vae_ckpt["model"])
        if run.resume_ckpt is not None and run.resume_ckpt.get("vae_fingerprint") != fingerprint:
            raise CheckpointError(
                f"{run.resume_path} was trained on the latents of a different VAE than {vae_path}: "
                "pass the same --vae as the original run"
            )
        torch.manual_seed(ts.seed)
        model = DiT.from_settings(settings, vae.config.latent_shape).to(device)
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        optimizer, scheduler = make_optimizer(model, ds.lr, ds.max_steps, settings)
        step, position = run.restore(model, optimizer, scheduler, ema)
        if init_ckpt is not None:
            if init_ckpt.get("vae_fingerprint") not in (None, fingerprint):
                raise CheckpointError(f"{init} was trained on the latents of a different VAE than {vae_path}")
            # A student may start from weights without the guidance embedding (its teacher's): it is new here.
            wanted = model.config
            init_cfg = checkpoint_config(init_ckpt, init)
            if teacher_ckpt is not None and not init_cfg.guidance_embed:
                wanted = dataclasses.replace(wanted, guidance_embed=False)
            check_config(init_ckpt, wanted, init, "settings of this run", settings.preset)
            weights = init_ckpt.get("ema") or init_ckpt["model"]
            kept = warm_start(model, weights, init)
            warm_start(ema, weights, init)
            run.print(f"warm start from {init} (step {init_ckpt.get('step', '?')}); new: {', '.join(kept) or 'none'}")
        if run.resume_ckpt:
            stats = run.resume_ckpt["latent_stats"]
        elif init_ckpt is not None and "latent_stats" in init_ckpt:
            stats = {k: v.float() for k, v in init_ckpt["latent_stats"].items()}
        else:
            stats = latent_stats(vae, settings, device)
        schedule = NoiseSchedule(ds)
        teacher_net = None
        if teacher_ckpt is not None:
            if teacher_ckpt.get("vae_fingerprint") not in (None, fingerprint):
                raise CheckpointError(f"{teacher} was trained on the latents of a different VAE than {vae_path}")
            if "latent_stats" in teacher_ckpt and not all(
                torch.allclose(teacher_ckpt["latent_stats"][k].float().cpu(), stats[k].float().cpu())
                for k in ("mean", "std")
            ):
                raise CheckpointError(f"{teacher} normalises latents differently from this run: start the "
                                      "student from the teacher (no --init) so that they share latent statistics")
            teacher_net = build_model(teacher_ckpt, teacher, device)
            run.print(f"guidance distillation from {teacher} (step {teacher_ckpt.get('step', '?')}): audio scales "
                      f"{ds.distill_guidance[0]:g}-{ds.distill_guidance[1]:g}")
        train_model: nn.Module = run.wrap(model)
        models = Models(vae=vae, dit=ema, latent_mean=stats["mean"].to(device), latent_std=stats["std"].to(device))

        micro = max(1, ds.batch_size // (run.dist.world_size * ts.grad_accum))  # windows per rank and micro-step
        pool = run.clip_pool(position)
        heldout = heldout_windows(settings, ts.preview_samples) if run.dist.is_main else None
        buckets = TimestepBuckets(ds.loss_buckets, ds.num_train_timesteps)
        reference: dict[str, float] = {}  # sync metrics of the held-out clips' own frames, measured once
        critic = None
        if run.dist.is_main:
            from synesthete.metrics.picture import load_critic

            try:
                critic = load_critic(settings.critic_path, device)
            except CheckpointError as exc:  # picture metrics are optional here; sync metrics still log
                run.print(f"held-out evals log sync metrics only: {exc}")
        eval_clips: list[dict] = []

        def checkpoint() -> dict[str, Any]:
            return make_checkpoint(
                "diffusion", model, settings, ema=raw_state_dict(ema), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), step=step, data_position=pool.position,
                latent_stats={k: v.cpu() for k, v in stats.items()}, vae_fingerprint=fingerprint,
                **({"teacher": str(teacher)} if teacher is not None else {}),
            )

        run.start_progress(step, ds.max_steps)
        while step < ds.max_steps:
            gen = run.seed_step(step)
            pool.refresh()
            windows = [pool.windows(micro, ds.window, ds.audio_context, gen) for _ in range(ts.grad_accum)]

            def loss_fn(i: int, windows=windows, gen=gen) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
                # uint8 [B, W, 3, H, W], [B, W + 2ctx, F], [B, S], uint8 [B, 3, H, W]
                frames, features, styles, anchors = windows[i]
                b, w = frames.shape[:2]
                # The anchors are encoded with the window, in one VAE pass, only when training uses them.
                seen = torch.cat([frames.flatten(0, 1), anchors]) if ds.anchor_prob > 0 else frames.flatten(0, 1)
                z = normalize(encode_frames(vae, seen, device, ts.amp), stats)
                x0 = z[: b * w].view(b, w, *z.shape[1:])  # [B, W, C, h, w]
                loss, logs, mse, t = diffusion_loss(train_model, schedule, x0, features.to(device), settings, gen,
                                                    style=styles.to(device), predictor=ema,
                                                    anchors=z[b * w :] if ds.anchor_prob > 0 else None,
                                                    teacher=teacher_net)
                if run.dist.is_main:
                    buckets.add(mse, t)
                return loss, logs, b

            result = run.optimize(train_model, optimizer, scheduler, loss_fn, step)
            update_ema(ema, model, ema_decay(step, ds.ema_decay))
            step += 1
            run.log_step(step, result, scheduler.get_last_lr()[0], unit="samples")
            if run.dist.is_main:
                if step % ts.log_every == 0:
                    buckets.log(run, step)
                if step % ts.image_every == 0 or step == ds.max_steps:
                    log_samples(run, models, heldout, step)
                if step % ts.eval_every == 0:
                    if not reference:
                        from synesthete.evaluate import heldout_clips

                        with one_thread():
                            eval_clips = heldout_clips(settings, ts.eval_clips)
                        reference = heldout_sync_metrics(None, eval_clips, settings)
                    renders = render_heldout(models, eval_clips, settings)
                    for key, value in heldout_sync_metrics(renders, eval_clips, settings).items():
                        run.scalar(f"eval/{key}", value, step)
                        run.scalar(f"eval_reference/{key}", reference[key], step)
                    if critic is not None:
                        log_picture(run, critic, renders, eval_clips, step)
                        log_families(run, models, critic, step)
            run.maybe_checkpoint(step, ds.max_steps, checkpoint)

        summary = run.summary(step, {"parameters": count_params(model)})
        if export is not None and run.dist.is_main:
            summary["exported"] = str(export_checkpoint(run.folder / LATEST, export))
    return summary

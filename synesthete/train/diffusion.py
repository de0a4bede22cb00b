"""`synesthete train diffusion`: the Brain learns to denoise windows of latents given their audio.

Data path of one step::

    clip pool (loop.ClipPool)       the last train.clip_pool clips of the stream, train.fresh_clips new per step
    -> batch_size random windows    random clip, random start s; W frames + features [s - ctx, s + W + ctx)
                                    (features zero-padded at the clip edges, as render pads a song)
    -> frozen VAE encoder (mean)    latents [B, W, C, h, w], scaled to unit variance per channel with the
                                    latent statistics measured once at the start (kept in the checkpoint)
    -> DDPM objective               x_t = q_sample(x0, noise, t), target = eps or v (sampling.NoiseSchedule)

Audio pressure (docs/model_architecture.md, ../shared/reference/upstream-lessons.md):

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
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.checkpoint import (
    Models,
    export_checkpoint,
    load_vae,
    make_checkpoint,
    raw_state_dict,
    vae_fingerprint,
)
from synesthete.device import autocast
from synesthete.errors import CheckpointError
from synesthete.models import count_params
from synesthete.models.dit import DiT
from synesthete.sampling import NoiseSchedule, sample
from synesthete.settings import Settings
from synesthete.train.loop import LATEST, TrainingRun, frames_to_float, image_row, make_optimizer, one_thread

ENCODE_CHUNK = 256  # frames per VAE forward when measuring latent statistics (bounds memory)
EMA_WARMUP = 10  # EMA decay ramps as (1 + step) / (EMA_WARMUP + step) up to diffusion.ema_decay


# --------------------------------------------------------------------------------------------- latents
@torch.no_grad()
def encode_frames(vae: nn.Module, frames: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """uint8 frames [N, 3, H, W] -> posterior-mean latents [N, C, h, w] (float32), in chunks."""
    out = []
    for chunk in frames.split(ENCODE_CHUNK):
        with autocast(device, amp):
            mean, _ = vae.encode(frames_to_float(chunk, device))
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
def diffusion_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """DDPM loss + CFG dropout + shuffled-audio hinge for x0 [B, W, C, h, w] and features [B, W + 2ctx, F].

    Returns (loss, logs, per-window correct-audio MSE [B], timesteps [B]).
    """
    ds = settings.diffusion
    b, device = x0.shape[0], x0.device
    noise = torch.randn(x0.shape, generator=generator).to(device)
    t = torch.randint(0, ds.num_train_timesteps, (b,), generator=generator).to(device)
    drop = (torch.rand(b, generator=generator) < ds.cfg_dropout).to(device)
    x_t = schedule.q_sample(x0, noise, t)
    target = schedule.target(x0, noise, t)
    use_hinge = ds.hinge_weight > 0 and b > 1
    if use_hinge:
        # One batched forward: first half with the window's own audio, second half with the next window's.
        shuffled = features.roll(1, dims=0)
        pred = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([features, shuffled]), torch.cat([drop, drop]))
        pred, pred_shuffled = pred.float().chunk(2)
    else:
        pred = model(x_t, t, features, drop).float()
    mse = (pred - target).pow(2).flatten(1).mean(1)  # [B]
    loss = mse.mean()
    logs: dict[str, torch.Tensor] = {"mse": mse.detach().mean()}
    if use_hinge:
        mse_shuffled = (pred_shuffled - target).pow(2).flatten(1).mean(1)  # [B]
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
def heldout_windows(settings: Settings, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed held-out windows (one per held-out clip, from its middle): frames uint8 [n, W, 3, H, W], features."""
    from synesthete.data import make_clip, seed_for

    window, ctx = settings.diffusion.window, settings.diffusion.audio_context
    frames, feats = [], []
    for i in range(count):
        with one_thread():
            clip = make_clip(seed_for(i, settings, "heldout"), settings)
        s = (clip["frames"].shape[0] - window) // 2
        frames.append(clip["frames"][s : s + window])
        feats.append(F.pad(clip["features"], (0, 0, ctx, ctx))[s : s + window + 2 * ctx])
    return torch.stack(frames), torch.stack(feats)


@torch.no_grad()
def sample_frames(
    models: Models, features: torch.Tensor, settings: Settings, seed: int
) -> torch.Tensor:
    """Sample windows for features [n, W + 2ctx, F] with the EMA and decode them: frames [n, W, 3, H, W]."""
    device = models.latent_mean.device
    n, window = features.shape[0], settings.diffusion.window
    c, h = settings.vae.latent_channels, settings.latent_size
    generator = torch.Generator(device).manual_seed(seed)
    latents = sample(models.dit, features.to(device), (n, window, c, h, h), settings, generator=generator)
    z = latents.float().flatten(0, 1) * models.latent_std.view(1, c, 1, 1) + models.latent_mean.view(1, c, 1, 1)
    frames = models.vae.decode(z).clamp(0, 1).float()  # [n * W, 3, H, W]
    return frames.view(n, window, *frames.shape[1:])


def log_samples(run: TrainingRun, models: Models, heldout: tuple[torch.Tensor, torch.Tensor], step: int) -> None:
    """Frame strips (each held-out window: truth above, sample below) and the shuffled-audio pixel gap."""
    truth, features = heldout
    seed = run.settings.train.seed
    frames = sample_frames(models, features, run.settings, seed).cpu()
    rows = []
    for i in range(truth.shape[0]):
        rows += [image_row(truth[i].float() / 255), image_row(frames[i])]
    run.image("diffusion/samples", torch.cat(rows, dim=-2), step)
    if truth.shape[0] > 1:
        # Same noise, another window's audio: how much the picture depends on the sound (the seed's metric).
        shuffled = sample_frames(models, features.roll(1, dims=0), run.settings, seed).cpu()
        run.scalar("diffusion/heldout_shuffle_pixel_diff", float((frames - shuffled).abs().mean()), step)


def heldout_sync_metrics(models: Models | None, clips: list[dict], settings: Settings) -> dict[str, float]:
    """Eval hook: sync metrics (``metrics.sync_metrics``) of held-out clips rendered by the EMA, averaged.

    The clips are ``evaluate.heldout_clips`` and the render uses the same noise seed as ``synesthete eval``,
    so these figures are that command's "model" row for the first ``train.eval_clips`` clips. With
    ``models=None`` the clips' own procedural frames are scored: the "oracle" a perfect model would reach.
    """
    from synesthete.metrics import sync_metrics
    from synesthete.render import generate_frames

    totals: dict[str, list[float]] = {}
    for clip in clips:
        frames = clip["frames"] if models is None else generate_frames(models, clip["audio"], settings)
        values = sync_metrics(frames, clip["audio"], settings.audio.sample_rate, settings.video.fps, settings,
                              beats=clip["meta"]["beats"])  # frames [T, 3, H, W]
        for key, value in values.items():
            totals.setdefault(key, []).append(value)
    return {key: _nanmean(values) for key, values in totals.items()}


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


# --------------------------------------------------------------------------------------------- trainer
def train_diffusion(
    settings: Settings,
    vae_path: str | Path | None = None,
    resume: str | Path | None = None,
    export: str | Path | None = None,
) -> dict[str, Any]:
    """Train the DiT on frozen-VAE latents under runs/<run-name>/; optionally export ``export``/diffusion.pt."""
    ds, ts = settings.diffusion, settings.train
    vae_path = Path(vae_path) if vae_path is not None else Path(settings.paths.checkpoints) / "vae.pt"
    if not vae_path.exists():
        raise CheckpointError(
            f"no VAE checkpoint at {vae_path}: train one first (`synesthete train vae --export "
            f"{settings.paths.checkpoints}`) or pass --vae PATH"
        )
    with TrainingRun("diffusion", settings, resume) as run:
        device = run.device
        vae, vae_ckpt = load_vae(vae_path, settings, device)
        fingerprint = vae_fingerprint(vae_ckpt["model"])
        if run.resume_ckpt is not None and run.resume_ckpt.get("vae_fingerprint") != fingerprint:
            raise CheckpointError(
                f"{run.resume_path} was trained on the latents of a different VAE than {vae_path}: "
                "pass the same --vae as the original run"
            )
        torch.manual_seed(ts.seed)
        model = DiT(settings).to(device)
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        optimizer, scheduler = make_optimizer(model, ds.lr, ds.max_steps, settings)
        step, position = run.restore(model, optimizer, scheduler, ema)
        stats = run.resume_ckpt["latent_stats"] if run.resume_ckpt else latent_stats(vae, settings, device)
        schedule = NoiseSchedule(ds)
        train_model: nn.Module = run.wrap(model)
        models = Models(vae=vae, dit=ema, latent_mean=stats["mean"].to(device), latent_std=stats["std"].to(device))

        micro = max(1, ds.batch_size // (run.dist.world_size * ts.grad_accum))  # windows per rank and micro-step
        pool = run.clip_pool(position)
        heldout = heldout_windows(settings, ts.preview_samples) if run.dist.is_main else None
        buckets = TimestepBuckets(ds.loss_buckets, ds.num_train_timesteps)
        reference: dict[str, float] = {}  # sync metrics of the held-out clips' own frames, measured once
        eval_clips: list[dict] = []

        def checkpoint() -> dict[str, Any]:
            return make_checkpoint(
                "diffusion", model, settings, ema=raw_state_dict(ema), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), step=step, data_position=pool.position,
                latent_stats={k: v.cpu() for k, v in stats.items()}, vae_fingerprint=fingerprint,
            )

        run.start_progress(step, ds.max_steps)
        while step < ds.max_steps:
            gen = run.seed_step(step)
            pool.refresh()
            windows = [pool.windows(micro, ds.window, ds.audio_context, gen) for _ in range(ts.grad_accum)]

            def loss_fn(i: int, windows=windows, gen=gen) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
                frames, features = windows[i]  # uint8 [B, W, 3, H, W], [B, W + 2ctx, F]
                b, w = frames.shape[:2]
                x0 = normalize(encode_frames(vae, frames.flatten(0, 1), device, ts.amp), stats)
                x0 = x0.view(b, w, *x0.shape[1:])  # [B, W, C, h, w]
                loss, logs, mse, t = diffusion_loss(train_model, schedule, x0, features.to(device), settings, gen)
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
                    for key, value in heldout_sync_metrics(models, eval_clips, settings).items():
                        run.scalar(f"eval/{key}", value, step)
                        run.scalar(f"eval_reference/{key}", reference[key], step)
            run.maybe_checkpoint(step, ds.max_steps, checkpoint)

        summary = run.summary(step, {"parameters": count_params(model)})
        if export is not None and run.dist.is_main:
            summary["exported"] = str(export_checkpoint(run.folder / LATEST, export))
    return summary

"""`synesthete train vae`: the Eye learns to compress frames from the infinite data engine.

Each batch takes ``vae.batch_size`` random frames from random clips of the clip pool (``train.clip_pool``
recent clips of the infinite stream, ``train.fresh_clips`` new ones per step): the frames of one clip are
alike, so spreading a batch over many clips gives far more diversity per step than whole clips would.
Loss = per-pixel MSE + ``kl_weight`` * KL.
Reconstructions of a fixed held-out batch (seeds from the held-out range, never trained on) are logged
as an image grid with their PSNR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from synesthete.checkpoint import export_checkpoint, make_checkpoint
from synesthete.data import make_clip, one_thread, seed_for
from synesthete.device import autocast
from synesthete.media import to_unit
from synesthete.metrics.quality import psnr
from synesthete.models import count_params
from synesthete.models.vae import VAE, vae_loss
from synesthete.settings import Settings
from synesthete.train.loop import LATEST, TrainingRun, image_row, make_optimizer


def heldout_frames(settings: Settings, count: int) -> torch.Tensor:
    """A fixed batch of ``count`` held-out frames, one per held-out clip, uint8 [count, 3, H, W]."""
    frames = []
    for i in range(count):
        with one_thread():
            clip = make_clip(seed_for(i, settings, "heldout"), settings)
        t = clip["frames"].shape[0]
        frames.append(clip["frames"][min(t - 1, (2 * i + 1) * t // (2 * count))])  # spread over the clip
    return torch.stack(frames)


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    """Deterministic reconstruction (decode the posterior mean) of frames [B, 3, H, W] in [0, 1]."""
    was_training = model.training
    model.eval()
    with autocast(device, amp):
        mean, _ = model.encode(x)
        recon = model.decode(mean).float()
    model.train(was_training)
    return recon


def log_reconstructions(run: TrainingRun, model: VAE, heldout: torch.Tensor, step: int) -> float:
    """Log the held-out reconstruction grid (originals above, reconstructions below) and its PSNR."""
    x = to_unit(heldout, run.device)
    recon = reconstruct(model, x, run.device, run.settings.train.amp)
    value = float(psnr(recon, x))
    run.scalar("vae/psnr_heldout", value, step)
    run.image("vae/reconstruction", torch.cat([image_row(x), image_row(recon)], dim=-2), step)
    return value


def train_vae(settings: Settings, resume: str | Path | None = None, export: str | Path | None = None) -> dict[str, Any]:
    """Train the VAE under runs/<run-name>/; optionally export compact weights to ``export``/vae.pt."""
    vs, ts = settings.vae, settings.train
    with TrainingRun("vae", settings, resume) as run:
        torch.manual_seed(ts.seed)
        model = VAE.from_settings(settings).to(run.device)
        optimizer, scheduler = make_optimizer(model, vs.lr, vs.max_steps, settings)
        step, position = run.restore(model, optimizer, scheduler)
        train_model: nn.Module = run.wrap(model)
        micro = max(1, vs.batch_size // (run.dist.world_size * ts.grad_accum))  # frames per rank and micro-step
        pool = run.clip_pool(position)
        heldout = heldout_frames(settings, ts.preview_samples) if run.dist.is_main else None

        def checkpoint() -> dict[str, Any]:
            return make_checkpoint(
                "vae", model, settings, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                step=step, data_position=pool.position,
            )

        run.start_progress(step, vs.max_steps)
        heldout_psnr = float("nan")
        while step < vs.max_steps:
            gen = run.seed_step(step)
            pool.refresh()
            frames = [pool.frames(micro, gen) for _ in range(ts.grad_accum)]  # uint8 [B, 3, H, W] each

            def loss_fn(i: int, frames=frames) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
                x = to_unit(frames[i], run.device)
                recon, mean, logvar = train_model(x)  # [B, 3, H, W], [B, C, h, w] x 2
                loss, parts = vae_loss(recon, x, mean, logvar, vs.kl_weight)
                parts["psnr"] = torch.tensor(psnr(recon.detach(), x))
                return loss, parts, x.shape[0]

            result = run.optimize(train_model, optimizer, scheduler, loss_fn, step)
            step += 1
            run.log_step(step, result, scheduler.get_last_lr()[0], unit="images")
            if run.dist.is_main and (step % ts.image_every == 0 or step == vs.max_steps):
                heldout_psnr = log_reconstructions(run, model, heldout, step)
            run.maybe_checkpoint(step, vs.max_steps, checkpoint)

        summary = run.summary(step, {"held-out PSNR (dB)": heldout_psnr, "parameters": count_params(model)})
        if export is not None and run.dist.is_main:
            summary["exported"] = str(export_checkpoint(run.folder / LATEST, export))
    return summary

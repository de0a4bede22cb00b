"""`synesthete train diffusion`: the Brain learns to denoise windows of latents given their audio.

Data path of one step::

    clip pool (data.ClipPool)       the last train.clip_pool clips of the stream, train.fresh_clips new per step
    -> batch_size random windows    random clip, random start s; W frames + features [s - ctx, s + W + ctx)
                                    (features zero-padded at the clip edges, as render pads a song)
    -> frozen VAE encoder (mean)    latents [B, W, C, h, w], scaled to unit variance per channel with the
                                    latent statistics measured once at the start (kept in the checkpoint)
    -> DDPM objective               x_t = q_sample(x0, noise, t), target = eps or v (train/losses.py)

Audio pressure (docs/model_architecture.md; ``train.losses``):

* classifier-free guidance dropout: ``diffusion.cfg_dropout`` of the windows get the null audio embedding;
* shuffled-audio hinge: the same noisy input and timestep are denoised a second time with the features of
  the next window of the batch (from another random clip of the pool), and
  ``relu(L_correct + margin - L_shuffled)`` is added per window, so ignoring the audio costs loss. Both
  halves run in one batched forward pass;
* silence and drop-out clips come from the data engine (``data.silence_prob``, ``data.dropout_prob``).

An EMA of the weights (a frozen copy in eval mode, updated every step) is what previews (``train.previews``),
eval and the exported checkpoint use. The trainer reads top to bottom: ``read_sources`` (the VAE, an --init
and a --teacher checkpoint, checked before the run folder is made), ``build_trainee`` (networks, optimiser,
resumed or warm-started state, latent statistics), ``train_steps`` (the loop) and the export.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
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
from synesthete.data import make_clip, one_thread, seed_for
from synesthete.device import autocast
from synesthete.errors import CheckpointError
from synesthete.media import to_unit
from synesthete.models import count_params
from synesthete.models.dit import DiT
from synesthete.sampling import NoiseSchedule
from synesthete.settings import Settings
from synesthete.train.loop import LATEST, TrainingRun, make_optimizer, resolve_resume
from synesthete.train.losses import diffusion_loss
from synesthete.train.previews import Previews

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


# --------------------------------------------------------------------------------------------- trainer
@dataclass
class Sources:
    """The checkpoints a run starts from, read and checked before its run folder is made."""

    vae: Path
    init: Path | None = None
    init_ckpt: dict[str, Any] | None = None
    teacher: Path | None = None
    teacher_ckpt: dict[str, Any] | None = None


def read_sources(
    settings: Settings, vae_path: str | Path | None, resume: str | Path | None, init: str | Path | None,
    teacher: str | Path | None,
) -> tuple[Settings, Sources]:
    """The run's settings (a distillation's student takes the guidance scale: ``dit.guidance_embed``) and
    its ``Sources``. A resumed distillation finds its teacher in its checkpoint; a student without ``init``
    starts from its teacher's weights."""
    if resume is not None and teacher is None:  # the run's settings may not say guidance_embed: ask its checkpoint
        stored = read_checkpoint(resolve_resume(resume)).get("teacher")
        teacher = Path(stored) if stored else None
    sources = Sources(vae=Path(vae_path) if vae_path is not None else Path(settings.paths.checkpoints) / "vae.pt")
    if teacher is not None:
        sources.teacher, sources.teacher_ckpt = teacher, load_checkpoint(teacher, "diffusion")
        checkpoint_config(sources.teacher_ckpt, teacher)  # a config this synesthete cannot run fails here
        settings = settings.updated(dit={"guidance_embed": True})
        if init is None and resume is None:
            init = teacher
    if not sources.vae.exists():
        raise CheckpointError(
            f"no VAE checkpoint at {sources.vae}: train one first (`synesthete train vae --export "
            f"{settings.paths.checkpoints}`) or pass --vae PATH"
        )
    if init is not None:
        if resume is not None:
            raise CheckpointError("--init starts a new run from weights; --resume continues a run: pass one")
        # A student that starts from its teacher reads the file once.
        sources.init = init
        sources.init_ckpt = sources.teacher_ckpt if init == teacher else load_checkpoint(init, "diffusion")
    return settings, sources


@dataclass
class Trainee:
    """What a diffusion run trains and with what: the DiT, its EMA, the optimiser, the frozen VAE, the latent
    statistics, a distillation's teacher, and where the run starts (step, data stream position)."""

    model: DiT
    ema: DiT
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    vae: nn.Module
    fingerprint: str  # of the VAE's weights
    stats: dict[str, torch.Tensor]  # latent mean and std [C]
    teacher: nn.Module | None
    step: int
    position: int

    def checkpoint(self, settings: Settings, step: int, position: int, teacher: Path | None) -> dict[str, Any]:
        """The run checkpoint at ``step`` (the data stream at ``position``)."""
        return make_checkpoint(
            "diffusion", self.model, settings, ema=raw_state_dict(self.ema), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), step=step, data_position=position,
            latent_stats={k: v.cpu() for k, v in self.stats.items()}, vae_fingerprint=self.fingerprint,
            **({"teacher": str(teacher)} if teacher is not None else {}),
        )


def load_run_vae(run: TrainingRun, path: Path) -> tuple[nn.Module, str]:
    """The frozen VAE of the run and its fingerprint, checked against the frame size and a resumed run's."""
    vae, vae_ckpt = load_vae(path, run.device)
    frame = (run.settings.video.height, run.settings.video.width)
    if (vae.config.height, vae.config.width) != frame:
        raise CheckpointError(
            f"{path} encodes {vae.config.width}x{vae.config.height} frames, the settings make "
            f"{frame[1]}x{frame[0]}: set video.width and video.height to the VAE's (SYNESTHETE_VIDEO__WIDTH="
            f"{vae.config.width} SYNESTHETE_VIDEO__HEIGHT={vae.config.height}), or pass another --vae"
        )
    fingerprint = vae_fingerprint(vae_ckpt["model"])
    if run.resume_ckpt is not None and run.resume_ckpt.get("vae_fingerprint") != fingerprint:
        raise CheckpointError(
            f"{run.resume_path} was trained on the latents of a different VAE than {path}: "
            "pass the same --vae as the original run"
        )
    return vae, fingerprint


def warm_start_from(run: TrainingRun, model: DiT, ema: DiT, sources: Sources, fingerprint: str) -> None:
    """Load ``sources.init``'s weights (its EMA if it has one) into ``model`` and ``ema`` where shapes allow."""
    init, init_ckpt = sources.init, sources.init_ckpt
    if init_ckpt.get("vae_fingerprint") not in (None, fingerprint):
        raise CheckpointError(f"{init} was trained on the latents of a different VAE than {sources.vae}")
    # A student may start from weights without the guidance embedding (its teacher's: it is new here), and from
    # weights that sampled with other steps (a step distillation halves a student's steps again).
    wanted = model.config
    if sources.teacher_ckpt is not None:
        own = checkpoint_config(init_ckpt, init)
        wanted = dataclasses.replace(wanted, guidance_embed=wanted.guidance_embed and own.guidance_embed,
                                     distilled_steps=own.distilled_steps)
    check_config(init_ckpt, wanted, init, "settings of this run", run.settings.preset)
    weights = init_ckpt.get("ema") or init_ckpt["model"]
    kept = warm_start(model, weights, init)
    warm_start(ema, weights, init)
    run.print(f"warm start from {init} (step {init_ckpt.get('step', '?')}); new: {', '.join(kept) or 'none'}")


def load_teacher(run: TrainingRun, sources: Sources, fingerprint: str, stats: dict[str, torch.Tensor]) -> nn.Module:
    """The frozen teacher of a guidance (or step) distillation, checked to share the student's latents."""
    teacher, ckpt = sources.teacher, sources.teacher_ckpt
    if ckpt.get("vae_fingerprint") not in (None, fingerprint):
        raise CheckpointError(f"{teacher} was trained on the latents of a different VAE than {sources.vae}")
    if "latent_stats" in ckpt and not all(
        torch.allclose(ckpt["latent_stats"][k].float().cpu(), stats[k].float().cpu()) for k in ("mean", "std")
    ):
        raise CheckpointError(f"{teacher} normalises latents differently from this run: start the "
                              "student from the teacher (no --init) so that they share latent statistics")
    net = build_model(ckpt, teacher, run.device)
    low, high = run.settings.diffusion.distill_guidance
    steps, sub = run.settings.diffusion.distill_steps, run.settings.diffusion.distill_substeps
    kind = f"step distillation to {steps} DDIM steps ({sub} teacher steps each)" if steps else "guidance distillation"
    run.print(f"{kind} from {teacher} (step {ckpt.get('step', '?')}): audio scales {low:g}-{high:g}")
    return net


def build_trainee(run: TrainingRun, sources: Sources) -> Trainee:
    """The networks and optimiser of the run, resumed or warm-started, and its latent statistics: from the
    resumed checkpoint, else the --init checkpoint's, else measured (``latent_stats``)."""
    settings, device = run.settings, run.device
    vae, fingerprint = load_run_vae(run, sources.vae)
    torch.manual_seed(settings.train.seed)
    model = DiT.from_settings(settings, vae.config.latent_shape).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer, scheduler = make_optimizer(model, settings.diffusion.lr, settings.diffusion.max_steps, settings)
    step, position = run.restore(model, optimizer, scheduler, ema)
    if sources.init_ckpt is not None:
        warm_start_from(run, model, ema, sources, fingerprint)
    if run.resume_ckpt:
        stats = run.resume_ckpt["latent_stats"]
    elif sources.init_ckpt is not None and "latent_stats" in sources.init_ckpt:
        stats = {k: v.float() for k, v in sources.init_ckpt["latent_stats"].items()}
    else:
        stats = latent_stats(vae, settings, device)
    teacher = load_teacher(run, sources, fingerprint, stats) if sources.teacher_ckpt is not None else None
    return Trainee(model, ema, optimizer, scheduler, vae, fingerprint, stats, teacher, step, position)


def window_loss(run: TrainingRun, tr: Trainee, train_model: nn.Module, schedule: NoiseSchedule, windows: list,
                gen: torch.Generator, buckets: TimestepBuckets, i: int) -> tuple[torch.Tensor, dict, int]:
    """The loss of micro-batch ``i`` of a step's ``windows``: encoded to latents, then ``diffusion_loss``."""
    settings, device = run.settings, run.device
    ds = settings.diffusion
    # uint8 [B, W, 3, H, W], [B, W + 2ctx, F], [B, S], uint8 [B, 3, H, W]
    frames, features, styles, anchors = windows[i]
    b, w = frames.shape[:2]
    # The anchors are encoded with the window, in one VAE pass, only when training uses them.
    seen = torch.cat([frames.flatten(0, 1), anchors]) if ds.anchor_prob > 0 else frames.flatten(0, 1)
    z = normalize(encode_frames(tr.vae, seen, device, settings.train.amp), tr.stats)
    x0 = z[: b * w].view(b, w, *z.shape[1:])  # [B, W, C, h, w]
    result = diffusion_loss(train_model, schedule, x0, features.to(device), settings, gen, style=styles.to(device),
                            predictor=tr.ema, anchors=z[b * w :] if ds.anchor_prob > 0 else None, teacher=tr.teacher)
    if run.dist.is_main:
        buckets.add(result.mse, result.t)
    return result.loss, result.logs, b


def train_steps(run: TrainingRun, tr: Trainee, teacher: Path | None) -> int:
    """Optimise from ``tr.step`` to ``diffusion.max_steps``, with EMA, logs, previews and checkpoints; returns
    the last step."""
    settings, device = run.settings, run.device
    ds, ts, cfg = settings.diffusion, settings.train, tr.model.config
    schedule = NoiseSchedule(cfg)
    train_model: nn.Module = run.wrap(tr.model)
    models = Models(vae=tr.vae, dit=tr.ema, latent_mean=tr.stats["mean"].to(device),
                    latent_std=tr.stats["std"].to(device))
    micro = max(1, ds.batch_size // (run.dist.world_size * ts.grad_accum))  # windows per rank and micro-step
    pool = run.clip_pool(tr.position)
    previews = Previews(run, models) if run.dist.is_main else None
    buckets = TimestepBuckets(ds.loss_buckets, cfg.num_train_timesteps)
    step = tr.step
    run.start_progress(step, ds.max_steps)
    while step < ds.max_steps:
        gen = run.seed_step(step)
        pool.refresh()
        windows = [pool.windows(micro, cfg.window, cfg.audio_context, gen) for _ in range(ts.grad_accum)]

        def loss_fn(i: int, windows=windows, gen=gen) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
            return window_loss(run, tr, train_model, schedule, windows, gen, buckets, i)

        result = run.optimize(train_model, tr.optimizer, tr.scheduler, loss_fn, step)
        update_ema(tr.ema, tr.model, ema_decay(step, ds.ema_decay))
        step += 1
        run.log_step(step, result, tr.scheduler.get_last_lr()[0], unit="samples")
        if previews is not None:
            if step % ts.log_every == 0:
                buckets.log(run, step)
            previews.after_step(step)
        run.maybe_checkpoint(step, ds.max_steps, lambda step=step: tr.checkpoint(settings, step, pool.position,
                                                                                  teacher))
    return step


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
    guidance scale as an input (``dit.guidance_embed`` is set) and learns the teacher's guided output
    (``train.losses.diffusion_loss``), so that sampling needs one pass per step instead of two. Without
    ``init`` the student starts from the teacher's weights. A resumed distillation finds its teacher in its
    checkpoint.
    """
    settings, sources = read_sources(settings, vae_path, resume, init, teacher)
    with TrainingRun("diffusion", settings, resume) as run:
        tr = build_trainee(run, sources)
        step = train_steps(run, tr, sources.teacher)
        summary = run.summary(step, {"parameters": count_params(tr.model)})
        if export is not None and run.dist.is_main:
            summary["exported"] = str(export_checkpoint(run.folder / LATEST, export))
    return summary

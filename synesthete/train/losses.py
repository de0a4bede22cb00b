"""The diffusion objective: what one batch of windows costs (``diffusion_loss``) and its parts.

For x0 [B, W, C, h, w] (unit-variance latents), features [B, W + 2ctx, F] and multi-hot styles [B, S]:

* every window draws a timestep t, an audio and a style dropout (classifier-free guidance), and a context mask
  (``context_masks``): its leading frames, and in a ``diffusion.bridge_prob`` share of the windows trailing
  frames too, are given as context, noised to a timestep uniform in 0..``diffusion.context_noise_max`` of the
  schedule and told the network that level; the loss covers only the frames to generate;
* the context shows the true latents, or (``diffusion.predicted_context``) the EMA network's own one-step
  estimate of them (``predicted_context``), or, as its first frame, an anchor from another moment of the clip
  (``diffusion.anchor_prob``);
* the shuffled-audio hinge: the same noisy input is denoised a second time with the next window's features in
  the same batched forward, and ``relu(L_correct + margin - L_shuffled)`` is added per window;
* with a ``teacher`` (guidance distillation) the target is the teacher's guided output (``teacher_output``), on
  the audio and, with ``diffusion.distill_style_guidance`` (per family: ``style_scales``), on the style too;
  with ``diffusion.distill_steps`` N as well (step distillation, Salimans & Ho 2022, "Progressive Distillation
  for Fast Sampling of Diffusion Models"), the windows' timesteps lie on the trailing grid of N sampling steps
  and the target is the one DDIM step that lands where ``diffusion.distill_substeps`` of the teacher's land
  (``stepped_target``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.errors import ConfigError
from synesthete.sampling import NoiseSchedule, guidance_distilled, randn_like
from synesthete.settings import Settings
from synesthete.styles import families


class DiffusionLoss(NamedTuple):
    """What ``diffusion_loss`` measured on one batch."""

    loss: torch.Tensor  # the scalar to minimise (MSE + hinge)
    logs: dict[str, torch.Tensor]  # detached scalars: mse, and with the hinge mse_shuffled, shuffle_gap, hinge
    mse: torch.Tensor  # [B] per-window correct-audio MSE, detached (the per-timestep diagnostic)
    t: torch.Tensor  # [B] the windows' timesteps


@dataclass
class Draws:
    """The random draws of one batch, in the order they are drawn from the step's generator."""

    noise: torch.Tensor  # [B, W, C, h, w]
    t: torch.Tensor  # [B]
    drop: torch.Tensor  # [B] bool: audio dropped
    drop_style: torch.Tensor  # [B] bool: style dropped
    ctx: torch.Tensor  # [B, W] bool: context frames
    t_ctx: torch.Tensor  # [B]: the context's noise level
    ctx_noise: torch.Tensor  # [B, W, C, h, w]


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


def draw(x0: torch.Tensor, settings: Settings, schedule: NoiseSchedule, generator: torch.Generator) -> Draws:
    """The batch's noise, timesteps, dropouts, context masks and context noise level (``Draws``)."""
    ds, steps = settings.diffusion, schedule.num_timesteps
    b, w, device = x0.shape[0], x0.shape[1], x0.device
    noise = randn_like(x0, generator)
    t = torch.randint(0, steps, (b,), generator=generator).to(device)
    drop = (torch.rand(b, generator=generator) < ds.cfg_dropout).to(device)
    drop_style = (torch.rand(b, generator=generator) < ds.style_dropout).to(device)
    ctx = context_masks(b, w, settings, generator).to(device)  # [B, W]
    # Context frames are noised to their own small timestep (0 = exactly clean), told to the network.
    most_ctx = round(ds.context_noise_max * (steps - 1))
    t_ctx = torch.randint(0, most_ctx + 1, (b,), generator=generator).to(device)
    ctx_noise = torch.randn(x0.shape, generator=generator).to(device)
    return Draws(noise, t, drop, drop_style, ctx, t_ctx, ctx_noise)


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
    lo, hi = (round(share * (schedule.num_timesteps - 1)) for share in ds.predicted_context_t)
    t = torch.randint(min(lo, hi), max(lo, hi) + 1, (b,), generator=generator).to(device)
    x = schedule.q_sample(x0, randn_like(x0, generator), t)
    keep = torch.zeros(b, dtype=torch.bool, device=device)
    out = predictor(x, t, features, keep, style=style, drop_style=keep if style is not None else None).float()
    return schedule.predict_x0(x, t, out)


def context_source(
    x0: torch.Tensor,
    ctx: torch.Tensor,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator,
    schedule: NoiseSchedule,
    style: torch.Tensor | None = None,
    predictor: nn.Module | None = None,
    anchors: torch.Tensor | None = None,
) -> torch.Tensor:
    """What the context frames ``ctx`` [B, W] of the windows show [B, W, C, h, w]: x0 itself, except that
    ``diffusion.predicted_context`` of the windows with context show ``predictor``'s estimate
    (``predicted_context``), and, with ``anchors`` [B, C, h, w], ``diffusion.anchor_prob`` of the windows with
    2 or more leading context frames show their anchor as the first frame (as ``render.anchor`` does)."""
    ds = settings.diffusion
    b, device = x0.shape[0], x0.device
    source = x0
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
    return source


def hinge_terms(mse: torch.Tensor, mse_shuffled: torch.Tensor, drop: torch.Tensor, margin: float,
                logs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The shuffled-audio hinge relu(L_correct + margin - L_shuffled), averaged over the windows whose audio was
    not dropped (with the audio dropped both halves see the null embedding: nothing to compare); fills
    ``logs``' mse_shuffled, shuffle_gap and hinge."""
    keep = ~drop
    if keep.any():
        hinge = F.relu(mse[keep] + margin - mse_shuffled[keep]).mean()
        logs["mse_shuffled"] = mse_shuffled[keep].detach().mean()
        logs["shuffle_gap"] = (mse_shuffled[keep] - mse[keep]).detach().mean()
    else:
        hinge = mse.new_zeros(())
        logs["mse_shuffled"] = logs["mse"]
        logs["shuffle_gap"] = mse.new_zeros(())
    logs["hinge"] = hinge.detach()
    return hinge


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
) -> DiffusionLoss:
    """DDPM loss + CFG dropouts + context + shuffled-audio hinge (module docstring), for x0 [B, W, C, h, w],
    features [B, W + 2ctx, F] and multi-hot styles [B, S].

    ``predictor`` (the EMA network) and ``anchors`` (latents [B, C, h, w] of another moment of each window's
    clip) change what the context shows (``context_source``). With ``teacher`` (guidance distillation;
    ``model`` takes the guidance scale, ``config.guidance_embed``), each window draws an audio guidance scale w
    uniform in ``diffusion.distill_guidance`` and the target is the teacher's classifier-free-guided output at
    w for the same inputs, e(a) + (w - 1) (e(a) - e(0)), instead of the true noise (or v).
    """
    ds = settings.diffusion
    b = x0.shape[0]
    d = draw(x0, settings, schedule, generator)
    stepped = teacher is not None and ds.distill_steps > 0
    if stepped:  # the student's timesteps, and the teacher's steps between each and the next
        times = grid_timesteps(schedule, ds.distill_steps, ds.distill_substeps, b, generator, x0.device)
        d.t = times[:, 0]
    source = context_source(x0, d.ctx, features, settings, generator, schedule, style, predictor, anchors)
    x_ctx = torch.where((d.t_ctx > 0).view(b, 1, 1, 1, 1), schedule.q_sample(source, d.ctx_noise, d.t_ctx), source)
    x_t = torch.where(d.ctx[..., None, None, None], x_ctx, schedule.q_sample(x0, d.noise, d.t))
    target = schedule.target(x0, d.noise, d.t)
    w_guide = None
    if teacher is not None:
        low, high = ds.distill_guidance
        w_guide = (low + (high - low) * torch.rand(b, generator=generator)).to(x0.device)  # [B]
        cond = Condition(features, d.drop, w_guide, style, d.drop_style, d.ctx, d.t_ctx, style_scales(style, settings))
        if stepped:
            target = stepped_target(teacher, schedule, x_t, times, cond, settings.sampling.clip_x0)
        else:
            target = teacher_output(teacher, x_t, d.t, cond)
    gen_frames = (~d.ctx).float()  # [B, W]: frames the loss covers (at least one per window)

    def window_mse(pred: torch.Tensor) -> torch.Tensor:
        per_frame = (pred - target).pow(2).flatten(2).mean(2)  # [B, W]
        return (per_frame * gen_frames).sum(1) / gen_frames.sum(1)  # [B]

    use_hinge = ds.hinge_weight > 0 and b > 1
    two = (lambda v: torch.cat([v, v])) if use_hinge else (lambda v: v)
    feats_in = torch.cat([features, features.roll(1, dims=0)]) if use_hinge else features
    # One batched forward: first half with the window's own audio, second half with the next window's.
    extra = {"guidance": two(w_guide)} if w_guide is not None else {}
    pred = model(two(x_t), two(d.t), feats_in, two(d.drop), style=two(style) if style is not None else None,
                 drop_style=two(d.drop_style), context_mask=two(d.ctx), context_t=two(d.t_ctx), **extra).float()
    if use_hinge:
        pred, pred_shuffled = pred.chunk(2)
    mse = window_mse(pred)  # [B]
    loss = mse.mean()
    logs: dict[str, torch.Tensor] = {"mse": mse.detach().mean()}
    if use_hinge:
        hinge = hinge_terms(mse, window_mse(pred_shuffled), d.drop, ds.hinge_margin, logs)
        loss = loss + ds.hinge_weight * hinge
    return DiffusionLoss(loss, logs, mse.detach(), d.t)


@dataclass
class Condition:
    """What a teacher is told besides x_t and t: the windows' audio, dropout, audio guidance scale, style and
    context (``diffusion_loss``'s draws)."""

    features: torch.Tensor  # [B, W + 2ctx, F]
    drop: torch.Tensor  # [B] bool
    w: torch.Tensor  # [B] audio guidance scale
    style: torch.Tensor | None  # [B, S]
    drop_style: torch.Tensor  # [B] bool
    ctx: torch.Tensor  # [B, W] bool
    t_ctx: torch.Tensor  # [B]
    style_scale: torch.Tensor | float = 1.0  # style guidance baked into the target: [B] or one (``style_scales``)


def style_scales(style: torch.Tensor | None, settings: Settings) -> torch.Tensor | float:
    """The style guidance scale baked into each window's target: ``diffusion.distill_style_guidance``, or per
    window [B] the mean of its families' scales (``diffusion.distill_style_guidance_families``) weighted by its
    style [B, S]."""
    ds = settings.diffusion
    if not ds.distill_style_guidance_families or style is None:
        return ds.distill_style_guidance
    names = families()
    unknown = sorted(set(ds.distill_style_guidance_families) - set(names))
    if unknown:
        raise ConfigError(f"diffusion.distill_style_guidance_families: {', '.join(unknown)} is not a visualizer "
                          f"family ({', '.join(names)})")
    table = torch.tensor([ds.distill_style_guidance_families.get(n, ds.distill_style_guidance) for n in names])
    weights = style.float().clamp(min=0)
    total = weights.sum(1)
    mean = weights @ table.to(weights.device) / total.clamp(min=1e-8)
    return torch.where(total > 0, mean, torch.full_like(mean, ds.distill_style_guidance))


@torch.no_grad()
def teacher_output(teacher: nn.Module, x_t: torch.Tensor, t: torch.Tensor, c: Condition) -> torch.Tensor:
    """The teacher's output [B, W, C, h, w] guided on the audio at the scales ``c.w`` and on the style at
    ``c.style_scale``, all its passes in one batched forward, combined as ``sampling.sample`` combines them:
    ``e_0 + sum_k scale_k (e_0 - e_k)``, each pass after the first with its own condition dropped. A
    guidance-distilled teacher is told the audio scale instead of running an audio-dropped pass; a plain one
    runs it. Windows whose audio (``c.drop``) or style (``c.drop_style``) is dropped get nothing from that term."""
    distilled = guidance_distilled(teacher)
    yes = torch.ones_like(c.drop)
    passes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | float | None]] = [(c.drop, c.drop_style, None)]
    if not distilled:
        passes.append((yes, c.drop_style, (c.w - 1).view(-1, *([1] * (x_t.ndim - 1)))))
    scale = torch.as_tensor(c.style_scale, dtype=torch.float32, device=x_t.device)
    if c.style is not None and bool((scale != 1).any()):
        passes.append((c.drop, yes, (scale - 1).view(-1, *([1] * (x_t.ndim - 1)))))  # one scale or [B]: broadcasts
    n = len(passes)
    rep = lambda v: torch.cat([v] * n) if v is not None else None  # noqa: E731
    extra = {"guidance": rep(c.w)} if distilled else {}
    parts = teacher(rep(x_t), rep(t), rep(c.features), torch.cat([p[0] for p in passes]), style=rep(c.style),
                    drop_style=torch.cat([p[1] for p in passes]), context_mask=rep(c.ctx), context_t=rep(c.t_ctx),
                    **extra).float().chunk(n)
    out = parts[0]
    for (_, _, scale), part in zip(passes[1:], parts[1:], strict=True):
        out = out + scale * (parts[0] - part)
    return out


def grid_timesteps(schedule: NoiseSchedule, steps: int, substeps: int, batch: int, generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """Per window, a student's step and its teacher's [B, substeps + 1]: a timestep t of the trailing grid of
    ``steps`` sampling steps (``schedule.timesteps``), then the ``substeps`` timesteps of the grid of
    ``steps * substeps`` that lead from it to the coarse grid's next one, t_next (-1: clean data)."""
    fine = torch.cat([schedule.timesteps(steps * substeps), torch.tensor([-1])])
    i = torch.randint(0, steps, (batch,), generator=generator) * substeps
    return fine[i[:, None] + torch.arange(substeps + 1)].to(device)


def _ab(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``schedule.coefficients`` at timesteps t [B] that may be -1 (clean data: 1 and 0)."""
    a, s = schedule.coefficients(t.clamp(min=0), like)
    clean = (t < 0).to(like.device).view(-1, *([1] * (like.ndim - 1)))
    return torch.where(clean, torch.ones_like(a), a), torch.where(clean, torch.zeros_like(s), s)


@torch.no_grad()
def stepped_target(teacher: nn.Module, schedule: NoiseSchedule, x_t: torch.Tensor, times: torch.Tensor, c: Condition,
                   clip_x0: float) -> torch.Tensor:
    """The step-distillation target [B, W, C, h, w] in the network's parameterisation: the teacher takes DDIM
    steps from x_t through the timesteps ``times`` [B, K + 1] (``grid_timesteps``), from t to t_next (context
    frames held, as the sampler holds them); the target is the x0 whose single DDIM step from x_t lands there,
    x0 = (z_next - (s_n / s_t) x_t) / (a_n - (s_n / s_t) a_t), written as the output that predicts it at t
    (Salimans & Ho 2022, algorithm 2, is K = 2)."""
    keep = c.ctx[..., None, None, None]

    def ddim(x: torch.Tensor, at: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
        x0 = schedule.predict_x0(x, at, teacher_output(teacher, x, at, c))
        x0 = x0.clamp(-clip_x0, clip_x0) if clip_x0 > 0 else x0
        a_t, s_t = _ab(schedule, at, x)
        a_n, s_n = _ab(schedule, to, x)
        return torch.where(keep, x, a_n * x0 + s_n * (x - a_t * x0) / s_t)

    t, t_next = times[:, 0], times[:, -1]
    z_next = x_t
    for k in range(times.shape[1] - 1):
        z_next = ddim(z_next, times[:, k], times[:, k + 1])
    a_t, s_t = _ab(schedule, t, x_t)
    a_n, s_n = _ab(schedule, t_next, x_t)
    ratio = s_n / s_t
    x0 = (z_next - ratio * x_t) / (a_n - ratio * a_t)
    return schedule.target(x0, (x_t - a_t * x0) / s_t, t)

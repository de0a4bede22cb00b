"""Noise schedule and samplers, diffusers-style: small objects that never know which network drives them.

- ``NoiseSchedule``: the forward process (cosine, ending at near-zero SNR), the training target for the
  configured prediction ("eps" or "v"), and the conversions between x_t, x0, eps and v.
- ``DDPMSampler`` (ancestral, respaced to any step count; 50 is the seed's), ``DDIMSampler`` (eta = 0,
  deterministic, few steps) and ``DPMSolverPP2MSampler`` ("dpm++": DPM-Solver++(2M), deterministic,
  second-order multistep, fewer steps for the same picture): each takes one step back from t to t_prev.
- ``sample``: the one sampling function train previews, ``render`` and ``eval`` share. Audio is encoded once,
  classifier-free guidance on the audio and on the style runs every pass in one batched forward, and clean
  ``context`` frames (the previous window's last frames) are given to the network as they are, never denoised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from synesthete.settings import DiTSettings, SamplingSettings

if TYPE_CHECKING:
    from synesthete.models.dit import DiTConfig

COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal's cosine schedule (keeps beta_1 from being vanishingly small)
MAX_BETA = 0.999  # cap on any single beta; the last step of the cosine schedule hits it (alpha_bar_T ~ 0)
LINEAR_BETA = (1e-4, 0.02)  # DDPM's linear betas at 1000 steps (rescaled for other step counts)


def _expand(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather ``values[t]`` (t [B]) and shape it [B, 1, ...] to broadcast against ``like``."""
    out = values.to(like.device)[t.to(like.device).long()]
    return out.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


class NoiseSchedule:
    """Forward process q(x_t | x0) over ``num_train_timesteps`` steps, and the prediction parametrisation."""

    def __init__(self, cfg: DiTConfig | DiTSettings) -> None:
        self.config = cfg  # what it was made from: a network's config (num_train_timesteps, schedule, prediction)
        self.num_timesteps = cfg.num_train_timesteps
        self.prediction = cfg.prediction
        steps = self.num_timesteps
        if cfg.schedule == "cosine":
            # alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2); betas capped at MAX_BETA.
            grid = torch.arange(steps + 1, dtype=torch.float64) / steps
            f = torch.cos((grid + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
        else:
            scale = 1000 / steps
            betas = torch.linspace(LINEAR_BETA[0] * scale, LINEAR_BETA[1] * scale, steps, dtype=torch.float64)
            betas = betas.clamp(max=MAX_BETA)
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self.betas = betas.float()  # [T]
        self.alphas_cumprod = alphas_cumprod.float()  # [T]
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1 - alphas_cumprod).sqrt().float()

    @property
    def terminal_alpha_bar(self) -> float:
        """alpha_bar at the last training step: the signal left in the "pure noise" sampling starts from."""
        return float(self.alphas_cumprod[-1])

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) for t [B], shaped [B, 1, ...] to broadcast against ``like``."""
        return _expand(self.sqrt_alphas_cumprod, t, like), _expand(self.sqrt_one_minus_alphas_cumprod, t, like)

    def q_sample(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise (x0, noise [B, ...], t [B])."""
        a, s = self.coefficients(t, x0)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output: the noise ("eps") or v = sqrt(ab) noise - sqrt(1-ab) x0 ("v")."""
        if self.prediction == "eps":
            return noise
        a, s = self.coefficients(t, x0)
        return a * noise - s * x0

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, model_out: torch.Tensor) -> torch.Tensor:
        """The clean latent implied by a network output at (x_t, t)."""
        a, s = self.coefficients(t, x_t)
        if self.prediction == "eps":
            return (x_t - s * model_out) / a
        return a * x_t - s * model_out

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, model_out: torch.Tensor) -> torch.Tensor:
        """The noise implied by a network output at (x_t, t)."""
        if self.prediction == "eps":
            return model_out
        a, s = self.coefficients(t, x_t)
        return s * x_t + a * model_out

    def timesteps(self, steps: int) -> torch.Tensor:
        """``steps`` sampling timesteps, descending, "trailing" spacing: the first is T-1 (pure noise)."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"sampling steps must be in 1..{self.num_timesteps}, got {steps}")
        ratio = self.num_timesteps / steps
        return (torch.arange(steps, 0, -1, dtype=torch.float64) * ratio).round().long() - 1

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at timestep ``t``; t = -1 means the clean data (alpha_bar = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])


class DDIMSampler:
    """Deterministic DDIM step (eta = 0): x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) eps."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    def step(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """One step from timestep t to t_prev (-1 = clean), given the predicted x0 and eps."""
        ab_prev = self.schedule.alpha_bar(t_prev)
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps


class DDPMSampler:
    """Ancestral DDPM step from the posterior q(x_prev | x_t, x0), respaced to any subset of timesteps."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    def step(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """One step from timestep t to t_prev (-1 = clean): posterior mean plus posterior-variance noise."""
        ab_t, ab_prev = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_prev)
        beta = 1 - ab_t / ab_prev  # the effective beta of the respaced step
        mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x_t
        if t_prev < 0:
            return mean
        variance = beta * (1 - ab_prev) / (1 - ab_t)
        return mean + math.sqrt(variance) * randn_like(x_t, generator)


class DPMSolverPP2MSampler:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
    Models", algorithm 2): a second-order multistep solver of the probability-flow ODE in data (x0) prediction.

    In log-SNR time lambda = log(alpha / sigma) (alpha = sqrt(ab), sigma = sqrt(1 - ab)) one step from t to s is

        x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D,   h = lambda_s - lambda_t,

    with D = x0_t on the first step (that is DDIM) and, on later steps, the linear extrapolation of the last two
    x0 predictions to the middle of the step: D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev, r = h_prev / h. The step
    to clean data (t_prev = -1, sigma = 0, lambda = inf) is first order and returns x0_t, as DDIM does. The same
    number of network passes as DDIM buys second-order accuracy, so fewer steps reach the same picture.
    A sampler object keeps the previous step's x0: ``sample`` makes a fresh one per call.
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        self.prev_x0: torch.Tensor | None = None
        self.prev_h: float | None = None

    def _log_snr(self, t: int) -> tuple[float, float, float]:
        """(alpha, sigma, lambda) at timestep t (t >= 0)."""
        ab = self.schedule.alpha_bar(t)
        alpha, sigma = math.sqrt(ab), math.sqrt(1 - ab)
        return alpha, sigma, math.log(alpha) - math.log(sigma)

    def step(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """One step from timestep t to t_prev (-1 = clean), given the predicted x0 (eps is not used)."""
        if t_prev < 0:
            self.prev_x0, self.prev_h = None, None
            return x0
        _, sigma_t, lam_t = self._log_snr(t)
        alpha_s, sigma_s, lam_s = self._log_snr(t_prev)
        h = lam_s - lam_t
        d = x0
        if self.prev_x0 is not None and self.prev_h is not None and h > 0:
            r = self.prev_h / h
            d = (1 + 0.5 / r) * x0 - (0.5 / r) * self.prev_x0
        self.prev_x0, self.prev_h = x0, h
        return (sigma_s / sigma_t) * x_t - (alpha_s * math.expm1(-h)) * d


Stepper = DDIMSampler | DDPMSampler | DPMSolverPP2MSampler
SAMPLERS: dict[str, type[Stepper]] = {
    "ddim": DDIMSampler,
    "ddpm": DDPMSampler,
    "dpm++": DPMSolverPP2MSampler,
}


# How a network that says nothing else is sampled (``sampling.sampler`` auto, ``sampling.steps`` empty).
PLAIN_SAMPLER, PLAIN_STEPS = "dpm++", 10


def recipe(cfg: SamplingSettings, config: DiTConfig | None) -> tuple[str, int]:
    """The sampler and steps a network of ``config`` is sampled with: the settings' where they name them, else
    the network's own (DDIM at the steps a step-distilled student learned, ``config.distilled_steps``; else
    ``PLAIN_SAMPLER`` at ``PLAIN_STEPS``)."""
    distilled = getattr(config, "distilled_steps", 0)
    sampler = cfg.sampler if cfg.sampler != "auto" else ("ddim" if distilled else PLAIN_SAMPLER)
    return sampler, cfg.steps or distilled or PLAIN_STEPS


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` (on its own device), on x's device."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def _inference(model: nn.Module, device: torch.device) -> Iterator[None]:
    """``model`` in eval mode (its mode restored after); weights stored in bf16 (``checkpoint.load_models`` on
    bf16 hardware) run under autocast, unless the caller's autocast already stands."""
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    half = param is not None and param.dtype in (torch.bfloat16, torch.float16)
    precision = contextlib.ExitStack()
    if half and not torch.is_autocast_enabled(device.type):
        precision.enter_context(torch.autocast(device_type=device.type, dtype=param.dtype))
    try:
        yield
    finally:
        precision.close()
        model.train(was_training)


@dataclass
class Passes:
    """The network passes of one sampling step, run as one batched forward: the conditional pass, then one per
    guidance term with its own condition dropped. Every per-pass input holds ``n`` blocks of ``batch`` rows."""

    n: int
    batch: int
    scales: list[float]  # the guidance scale - 1 of each pass after the first
    features: torch.Tensor  # [n*B, W + 2ctx, F]
    drop_audio: torch.Tensor  # [n*B] bool
    drop_style: torch.Tensor  # [n*B] bool
    audio: object | None  # the encoded audio (``embed_audio``), when the network has it
    style: torch.Tensor | None  # [n*B, S]
    guidance: torch.Tensor | None = None  # [n*B]: the audio scale, told a guidance-distilled network
    context_mask: torch.Tensor | None = None  # [n*B, W] bool
    context_t: torch.Tensor | None = None  # [n*B]: the context's timestep (0: clean)

    def inputs(self) -> list[object]:
        """The per-pass inputs in ``model_call``'s order after (x, t)."""
        return [self.features, self.drop_audio, self.audio, self.style, self.drop_style, self.context_mask,
                self.context_t, self.guidance]

    def output(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The guided network output [B, ...] at x [B, ...], t [B]: every pass in one forward, combined as
        ``out = e_0 + sum_k scale_k (e_0 - e_k)``; with one pass, the first ``batch`` rows of every input."""
        if self.n == 1:
            return model_call(model, x, t, *_rows(self.batch, *self.inputs())).float()
        x_in = x.repeat(self.n, *([1] * (x.ndim - 1)))
        parts = model_call(model, x_in, t.repeat(self.n), *self.inputs()).float().chunk(self.n)
        out = parts[0]
        for scale, part in zip(self.scales, parts[1:], strict=True):
            out = out + scale * (parts[0] - part)
        return out


def guidance_passes(model: nn.Module, features: torch.Tensor, style: torch.Tensor | None, guidance: float,
                    style_guidance: float) -> Passes:
    """The ``Passes`` of a step for ``features`` [B, W + 2ctx, F] (on the model's device) and ``style`` [B, S]:
    a pass for audio guidance unless its scale is 1 or the network is guidance-distilled (then the scale is an
    input of every pass), one for style guidance unless its scale is 1 or there is no style. The audio is
    encoded here, once for every step (the seed re-ran its audio encoder in all 50 passes)."""
    device, batch = features.device, features.shape[0]
    passes = [(False, False)]  # (drop audio, drop style) of each pass
    scales = []
    distilled = guidance_distilled(model)
    if guidance != 1.0 and not distilled:
        passes.append((True, False))
        scales.append(guidance - 1.0)
    if style_guidance != 1.0 and style is not None:
        passes.append((False, True))
        scales.append(style_guidance - 1.0)
    n = len(passes)
    drop_audio, drop_style = (torch.tensor([p[k] for p in passes], device=device).repeat_interleave(batch)
                              for k in (0, 1))
    feats_in = features.repeat(n, 1, 1)
    audio = model.embed_audio(feats_in, drop_audio) if hasattr(model, "embed_audio") else None
    style_in = style.to(device=device, dtype=torch.float32).repeat(n, 1) if style is not None else None
    w_in = torch.full((batch * n,), guidance, device=device) if distilled else None
    return Passes(n, batch, scales, feats_in, drop_audio, drop_style, audio, style_in, w_in)


def _denoise(model: nn.Module, schedule: NoiseSchedule, stepper: Stepper, x: torch.Tensor, passes: Passes,
             steps: int, clip_x0: float, generator: torch.Generator | None, context: torch.Tensor | None,
             mask: torch.Tensor | None, callback: Callable[[int, int], None] | None) -> torch.Tensor:
    """The sampling loop from x (noise, with the context frames in place) to clean latents."""
    batch = x.shape[0]
    timesteps = schedule.timesteps(steps).tolist()
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_batch = torch.full((batch,), t, dtype=torch.long, device=x.device)
        out = passes.output(model, x, t_batch)
        x0 = schedule.predict_x0(x, t_batch, out)
        if clip_x0 > 0:
            x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x - math.sqrt(schedule.alpha_bar(t)) * x0) / math.sqrt(1 - schedule.alpha_bar(t))
        x = stepper.step(x, x0, eps, t, t_prev, generator)
        if context is not None:
            x = torch.where(mask, context, x)
        if callback is not None:
            callback(i + 1, len(timesteps))
    return x


@torch.no_grad()
def sample(
    model: nn.Module,
    features: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    cfg: SamplingSettings,
    steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    style: torch.Tensor | None = None,
    style_guidance: float | None = None,
    context: torch.Tensor | None = None,
    context_mask: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Generate clean latents [B, W, C, h, w] (unit-variance latent space) for features [B, W + 2*ctx, F].

    The noise schedule is the one the network was trained on (its ``config``). ``cfg`` (``settings.sampling``) gives
    the sampler's defaults: ``steps``, ``sampler`` ("ddpm" | "ddim" | "dpm++"; where the settings say auto, the
    network's own: ``recipe``), ``guidance`` (audio) and ``style_guidance`` default to it. ``style`` [B, S] is the
    multi-hot style (None: the null style). Classifier-free guidance composes one term per condition, each against a
    pass with only that condition dropped:

        out = e(s, a) + (g_audio - 1) (e(s, a) - e(s, 0)) + (g_style - 1) (e(s, a) - e(0, a))

    and all passes run in one batched forward (a scale of 1 skips its pass), at every step (``Passes``).
    ``context`` [B, W, C, h, w] with ``context_mask`` [B, W] bool gives clean context frames: they are never
    denoised and are returned exactly. The network sees them as they are, flagged as context (timestep 0) at
    every step. A guidance-distilled network (``config.guidance_embed``) is told the audio guidance scale
    instead: the audio term then costs no pass.
    ``callback(step, total)`` is called after every step (progress bars).
    """
    if not isinstance(cfg, SamplingSettings):
        raise TypeError(f"sample() takes the sampling settings (settings.sampling), not {type(cfg).__name__}")
    own_sampler, own_steps = recipe(cfg, getattr(model, "config", None))
    steps = own_steps if steps is None else steps
    sampler = own_sampler if sampler is None else sampler
    guidance = cfg.guidance if guidance is None else guidance
    style_guidance = cfg.style_guidance if style_guidance is None else style_guidance
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler '{sampler}': use one of {sorted(SAMPLERS)}")
    if getattr(model, "config", None) is None:
        raise TypeError("sample() needs a network with a config: the noise schedule it was trained on")
    schedule = NoiseSchedule(model.config)
    device = _model_device(model)
    shape = tuple(shape)
    batch = shape[0]
    features = features.to(device=device, dtype=torch.float32)  # [B, W + 2ctx, F]
    if features.shape[0] != batch:
        raise ValueError(f"features batch {features.shape[0]} does not match the sample shape {shape}")
    with _inference(model, device):
        passes = guidance_passes(model, features, style, guidance, style_guidance)
        x = randn_like(torch.empty(shape, device=device), generator)  # [B, W, C, h, w]
        mask = None
        if context is not None:
            if context_mask is None:
                raise ValueError("context latents need a context_mask [B, W] saying which frames they give")
            context = context.to(device=device, dtype=torch.float32)
            mask = context_mask.to(device=device, dtype=torch.bool).view(batch, shape[1], *([1] * (len(shape) - 2)))
            passes.context_mask = context_mask.to(device=device, dtype=torch.bool).repeat(passes.n, 1)
            passes.context_t = torch.zeros((batch * passes.n,), dtype=torch.long, device=device)  # clean
            x = torch.where(mask, context, x)
        return _denoise(model, schedule, SAMPLERS[sampler](schedule), x, passes, steps, cfg.clip_x0, generator,
                        context, mask, callback)


def guidance_distilled(model: nn.Module) -> bool:
    """Whether ``model`` takes the audio guidance scale as an input (``config.guidance_embed``): one pass per
    sampling step gives the guided output."""
    return bool(getattr(getattr(model, "config", None), "guidance_embed", False))


def _rows(n: int, *items: object) -> list[object]:
    """The first n rows of each per-pass input (tensors, or a dataclass of tensors such as AudioCondition)."""
    out = []
    for item in items:
        if item is None:
            out.append(None)
        elif isinstance(item, torch.Tensor):
            out.append(item[:n])
        else:
            out.append(dataclasses.replace(item, **{f.name: getattr(item, f.name)[:n]
                                                    for f in dataclasses.fields(item)}))
    return out


def model_call(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, features: torch.Tensor, drop: torch.Tensor,
    audio: object | None, style: torch.Tensor | None = None, drop_style: torch.Tensor | None = None,
    context_mask: torch.Tensor | None = None, context_t: torch.Tensor | None = None,
    guidance: torch.Tensor | None = None,
) -> torch.Tensor:
    """One network evaluation, with the precomputed audio condition when the model supports it.

    Style, context and the guidance scale (``guidance`` [B], guidance-distilled DiTs) reach only networks that
    take them; a plain ``model(x, t, features, drop)`` works too (tests, simple denoisers).
    """
    extra = {}
    if guidance is not None:
        extra["guidance"] = guidance
    if style is not None:
        extra.update(style=style, drop_style=drop_style)
    if context_mask is not None:
        extra["context_mask"] = context_mask
        if context_t is not None:
            extra["context_t"] = context_t
    if audio is not None:
        return model(x, t, audio=audio, **extra)
    return model(x, t, features, drop, **extra)

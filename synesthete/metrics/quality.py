"""Picture-quality side metrics: PSNR, SSIM, flicker in silence and the silence response."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from synesthete.media import to_unit

# SSIM (Wang et al. 2004): 11-tap Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03 on a unit range.
SSIM_TAPS, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
MSE_FLOOR = 1e-10  # caps PSNR of identical frames at 100 dB


def nanmean(values: list[float]) -> float:
    """Mean of the finite values (None and NaN skipped); NaN when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB) of frames [T, 3, H, W] (uint8 or float in [0, 1])."""
    mse = (to_unit(a) - to_unit(b)).pow(2).flatten(1).mean(1).clamp(min=MSE_FLOOR)  # [T]
    return float((10 * torch.log10(1.0 / mse)).mean())


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of frames [T, 3, H, W] (per channel, Gaussian window, valid region only)."""
    x, y = to_unit(a), to_unit(b)
    channels = x.shape[1]
    taps = min(SSIM_TAPS, x.shape[-1], x.shape[-2]) | 1
    g = torch.exp(-0.5 * ((torch.arange(taps) - taps // 2) / SSIM_SIGMA) ** 2)
    g = (g / g.sum()).to(x)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, taps, taps)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel, groups=channels)

    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def silent_frames(wave: torch.Tensor, sample_rate: int, fps: float, num_frames: int, silence_db: float) -> np.ndarray:
    """Per video frame: is the audio RMS over [i/fps, (i+1)/fps) below ``silence_db`` dBFS? -> bool [T]."""
    w = wave.float().reshape(-1, wave.shape[-1]).mean(0).cpu()  # [N] mono
    edges = (torch.arange(num_frames + 1, dtype=torch.float64) * sample_rate / fps).round().long().clamp(max=len(w))
    sq = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(w.double() ** 2, 0)])
    counts = (edges[1:] - edges[:-1]).clamp(min=1)
    power = (sq[edges[1:]] - sq[edges[:-1]]) / counts
    db = 10 * torch.log10(power + 1e-20)
    return (db < silence_db).numpy()


def settled(silent: np.ndarray, settle_frames: int) -> np.ndarray:
    """Frames that have been silent for at least ``settle_frames`` frames before them (and are silent)."""
    silent = np.asarray(silent, dtype=bool)
    run = np.zeros(len(silent), dtype=np.int64)
    count = 0
    for i, s in enumerate(silent):  # run length of silence up to and including frame i
        count = count + 1 if s else 0
        run[i] = count
    return run > settle_frames


def flicker(frames: torch.Tensor, mask: np.ndarray) -> float:
    """Mean absolute frame-to-frame change (fraction of full scale) on the frames in ``mask``; NaN if none."""
    idx = np.nonzero(np.asarray(mask, dtype=bool))[0]
    idx = idx[idx >= 1]
    if idx.size == 0:
        return math.nan
    t = torch.as_tensor(idx)
    return float((to_unit(frames[t]) - to_unit(frames[t - 1])).abs().mean())


def silence_response(motion: np.ndarray, quiet: np.ndarray, sound: np.ndarray) -> tuple[float, float, float]:
    """(mean motion in settled silence, mean motion in sound, their ratio); NaN where a part is empty."""
    motion = np.asarray(motion, dtype=np.float64)
    m_quiet = float(motion[quiet].mean()) if np.any(quiet) else math.nan
    m_sound = float(motion[sound].mean()) if np.any(sound) else math.nan
    if math.isnan(m_quiet) or math.isnan(m_sound):
        return m_quiet, m_sound, math.nan
    ratio = m_quiet / m_sound if m_sound > 0 else (0.0 if m_quiet == 0 else math.inf)
    return m_quiet, m_sound, ratio

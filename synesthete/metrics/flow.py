"""Dense optical flow in torch: pyramidal Lucas-Kanade, vectorised over frame pairs and pixels.

AV-Align's reference uses OpenCV's Farneback flow (3 levels, pyramid scale 0.5, 15-pixel window,
3 iterations). We keep its pyramid and window and replace the polynomial expansion by the classic
Lucas-Kanade least-squares step with a small Tikhonov term, iterated with warping: both give a dense flow
whose mean magnitude jumps when something moves. See docs/evaluation.md for the comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synesthete.media import to_unit
from synesthete.settings import EvalSettings

# ITU-R BT.601 luma weights, as OpenCV's BGR2GRAY.
LUMA = (0.299, 0.587, 0.114)
# Tikhonov term on the 2x2 structure tensor (intensity^2 units, intensities in [0, 1]): flat regions get
# zero flow instead of a division by zero.
TIKHONOV = 1e-4


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """uint8 or float frames [T, 3, H, W] -> float greyscale [T, 1, H, W] in [0, 1]."""
    x = to_unit(frames)
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _box(x: torch.Tensor, size: int) -> torch.Tensor:
    # Window mean, truncated at the borders (count_include_pad=False), as a local least-squares window.
    # Separable: a row pass then a column pass costs 2k instead of k^2 per pixel.
    size = size | 1  # odd, so the output keeps the input size
    x = F.avg_pool2d(x, (1, size), stride=1, padding=(0, size // 2), count_include_pad=False)
    return F.avg_pool2d(x, (size, 1), stride=1, padding=(size // 2, 0), count_include_pad=False)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Central differences with replicated borders.  x: [B, 1, H, W]
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5
    return gx, gy


def _warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    # Sample x at (p + flow(p)).  x: [B, 1, H, W], flow: [B, 2, H, W] in pixels (dx, dy).
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype), torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # [B, H, W, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def lucas_kanade(prev: torch.Tensor, nxt: torch.Tensor, levels: int, window: int, iterations: int) -> torch.Tensor:
    """Flow from ``prev`` to ``nxt`` (both [B, 1, H, W] in [0, 1]) -> [B, 2, H, W] in pixels."""
    pyramid = [(prev, nxt)]
    for _ in range(levels - 1):
        a, b = pyramid[-1]
        if min(a.shape[-2:]) < 2 * window:
            break
        pyramid.append((F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)))  # pyramid scale 0.5
    flow = None
    for a, b in reversed(pyramid):
        if flow is None:
            flow = a.new_zeros(a.shape[0], 2, *a.shape[-2:])
        else:
            flow = F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False) * 2.0
        for _ in range(iterations):
            warped = _warp(b, flow)
            gx, gy = _gradients(0.5 * (a + warped))
            gt = warped - a
            # The five structure-tensor products, window-averaged in one call.  [B, 5, H, W]
            s = _box(torch.cat([gx * gx, gy * gy, gx * gy, gx * gt, gy * gt], dim=1), window)
            sxx, syy, sxy, sxt, syt = s.unbind(1)
            sxx, syy = sxx + TIKHONOV, syy + TIKHONOV
            det = sxx * syy - sxy * sxy
            du = -(syy * sxt - sxy * syt) / det
            dv = -(sxx * syt - sxy * sxt) / det
            flow = flow + torch.stack([du, dv], dim=1)
    return flow


def motion_curve(frames: torch.Tensor, settings: EvalSettings) -> torch.Tensor:
    """Mean optical-flow magnitude per frame (pixels of the input size) -> [T]; frame 0 reuses frame 1.

    ``frames``: uint8 or float [T, 3, H, W]. Frame i's value is the flow from frame i-1 to frame i. Frames
    larger than ``settings.flow_max_side`` are downscaled first (magnitudes are rescaled back).
    """
    t = frames.shape[0]
    if t < 2:
        return torch.zeros(t)
    h, w = frames.shape[-2:]
    scale = min(1.0, settings.flow_max_side / max(h, w))
    out = []
    with torch.no_grad():
        # Chunks of frame pairs share a boundary frame, so peak memory does not grow with the video length.
        for start in range(0, t - 1, settings.flow_batch):
            stop = min(t, start + settings.flow_batch + 1)
            gray = to_gray(frames[start:stop])  # [b + 1, 1, H, W]
            if scale < 1.0:
                gray = F.interpolate(gray, scale_factor=scale, mode="area")
            flow = lucas_kanade(
                gray[:-1], gray[1:], settings.flow_levels, settings.flow_window, settings.flow_iterations
            )
            out.append(flow.norm(dim=1).mean(dim=(1, 2)) / scale)  # [b]
    mags = torch.cat(out).cpu()  # [T - 1]: flow into frames 1 .. T-1
    return torch.cat([mags[:1], mags])

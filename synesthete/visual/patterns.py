"""Pattern visualizers: a kaleidoscope of interfering waves and a grid of band-driven tiles."""

from __future__ import annotations

import math
import random

import torch

from synesthete.settings import Settings
from synesthete.visual.core import (
    SHAPES,
    Context,
    Visualizer,
    bright_color,
    coverage,
    dark_color,
    hash01,
    shape_distance,
)


def _sign(rng: random.Random) -> int:
    return rng.choice([-1, 1])


# --------------------------------------------------------------------------------------------------- kaleido
def sample_kaleido(rng: random.Random, settings: Settings) -> dict:
    """A mirrored k-fold kaleidoscope of 2-3 plane/radial waves, each tied to one band."""
    waves = []
    for _ in range(rng.randint(2, 3)):
        waves.append({
            "fu": round(_sign(rng) * rng.uniform(4.0, 14.0), 3),
            "fv": round(_sign(rng) * rng.uniform(4.0, 14.0), 3),
            "fr": round(rng.uniform(-10.0, 10.0), 3),
            "speed": round(_sign(rng) * rng.uniform(0.6, 1.6), 3),
            "jump": round(_sign(rng) * rng.uniform(1.3, 2.4), 3),
            "band": rng.randrange(settings.audio.n_bands),
        })
    return {
        "segments": rng.choice([4, 6, 8, 10, 12]),
        "turn": round(rng.random(), 3),
        "waves": waves,
        "deep": bright_color(rng),
        "light": bright_color(rng),
        "contrast": round(rng.uniform(2.0, 4.0), 3),
        "vignette": round(rng.uniform(0.2, 0.6), 3),
        "decay": round(rng.uniform(0.1, 0.2), 3),
        "flash": round(rng.uniform(0.3, 0.6), 3),
    }


def render_kaleido(ctx: Context, p: dict) -> torch.Tensor:
    """Waves drift with loudness, jump phase on every hit (the pattern snaps) and flash; bands set contrast."""
    canvas, drive = ctx.canvas, ctx.drive
    env = drive.envelope(p["decay"])  # [T]
    sector = 2 * math.pi / p["segments"]
    folded = ((canvas.theta + 2 * math.pi * p["turn"]) % sector - sector / 2).abs()  # [H, W] mirror fold
    u, v = canvas.r * torch.cos(folded), canvas.r * torch.sin(folded)
    kicks = torch.cumsum(drive.hit * drive.events, 0)  # [T] sum of hit strengths so far
    bands = drive.band_levels(drive.native_bands.shape[1])
    field = torch.zeros(drive.frames, canvas.height, canvas.width, device=ctx.device)  # [T, H, W]
    for w in p["waves"]:
        # sin(a + phi_t) = sin(a) cos(phi_t) + cos(a) sin(phi_t): static maps times per-frame scalars.
        a = w["fu"] * u + w["fv"] * v + w["fr"] * canvas.r  # [H, W]
        phase = w["speed"] * drive.integrate(drive.level) + w["jump"] * kicks  # [T]
        amp = (0.5 + 0.5 * bands[:, w["band"]]) / len(p["waves"])  # [T]
        field.addcmul_(torch.sin(a), (amp * torch.cos(phase))[:, None, None])
        field.addcmul_(torch.cos(a), (amp * torch.sin(phase))[:, None, None])
    shade = (0.5 + 0.5 * p["contrast"] * field).clamp_(0, 1)  # [T, H, W]
    deep = ctx.color(p["deep"]) * 0.25
    light = ctx.flash(p["light"], p["flash"] * env)  # [T, 3]
    out = (shade[:, None] * (light - deep)[:, :, None, None]).add_(deep[None, :, None, None])  # [T, 3, H, W]
    brightness = 0.6 + 0.25 * drive.level + 0.3 * env  # [T]
    vignette = (1 - p["vignette"] * canvas.r**2).clamp(min=0)  # [H, W]
    return out.mul_((brightness[:, None, None] * vignette)[:, None])


# ----------------------------------------------------------------------------------------------------- tiles
def sample_tiles(rng: random.Random, settings: Settings) -> dict:
    """A grid of shapes, each sized by one band, recoloured from a palette on every beat."""
    return {
        "columns": rng.randint(3, 8),
        "shape": rng.choice(SHAPES),
        "layout": rng.choice(["columns", "rows", "random", "radial"]),
        "palette": [bright_color(rng) for _ in range(rng.randint(2, 4))],
        "bg": dark_color(rng),
        "base": round(rng.uniform(0.15, 0.35), 3),
        "gain": round(rng.uniform(0.4, 0.6), 3),
        "kick": round(rng.uniform(0.15, 0.3), 3),
        "recolor": round(rng.uniform(0.5, 1.0), 3),
        "seed": rng.randrange(1 << 30),
        "decay": round(rng.uniform(0.1, 0.2), 3),
        "flash": round(rng.uniform(0.3, 0.6), 3),
    }


def render_tiles(ctx: Context, p: dict) -> torch.Tensor:
    """Each tile's shape follows its band; on a hit every shape grows and flashes and tiles change colour."""
    canvas, drive = ctx.canvas, ctx.drive
    device = ctx.device
    env = drive.envelope(p["decay"])  # [T]
    cols = int(p["columns"])
    rows = max(1, round(cols / canvas.aspect))
    gx = ((canvas.x / canvas.aspect + 1) / 2 * cols).clamp(0, cols - 1e-4)  # [1, W] in tile units
    gy = ((canvas.y + 1) / 2 * rows).clamp(0, rows - 1e-4)  # [H, 1]
    col, row = gx.floor(), gy.floor()
    tile = (row * cols + col).long().reshape(-1)  # [HW]
    local = shape_distance(p["shape"], (gx - col) * 2 - 1, (gy - row) * 2 - 1)  # [H, W] 1 = tile edge
    n_tiles = rows * cols
    ids = torch.arange(n_tiles, device=device)
    n_bands = drive.native_bands.shape[1]
    tc, tr = (ids % cols).float(), (ids // cols).float()
    if p["layout"] == "columns":
        band = (tc / cols * n_bands).long()
    elif p["layout"] == "rows":
        band = (tr / rows * n_bands).long()
    elif p["layout"] == "radial":
        dist = torch.sqrt(((tc + 0.5) / cols - 0.5) ** 2 + ((tr + 0.5) / rows - 0.5) ** 2) / math.sqrt(0.5)
        band = (dist * n_bands).long()
    else:
        band = (hash01(p["seed"], ids) * n_bands).long()
    band = band.clamp(0, n_bands - 1)
    levels = drive.band_levels(n_bands)[:, band]  # [T, tiles]
    size = p["base"] + p["gain"] * levels + p["kick"] * env[:, None]  # [T, tiles]
    pixel = canvas.pixel * cols / (2 * canvas.aspect)  # one pixel in tile-local units
    mask = coverage(local.reshape(-1) - size[:, tile], pixel).view(-1, canvas.height, canvas.width)
    # Colours: on each event a tile is recoloured with probability `recolor`; its colour is a hash of the
    # last event that recoloured it, so between beats nothing changes.
    number = drive.event_index[:, None]  # [T, 1]
    changed = drive.events[:, None] & (hash01(p["seed"], number, ids) < p["recolor"])  # [T, tiles]
    last = torch.cummax(torch.where(changed, number, 0), 0).values  # [T, tiles]
    palette = torch.stack([ctx.color(c) for c in p["palette"]])  # [K, 3]
    pick = (hash01(p["seed"] + 1, last, ids) * len(p["palette"])).long().clamp(max=len(p["palette"]) - 1)
    color = palette[pick]  # [T, tiles, 3]
    color = color + (1 - color) * (p["flash"] * env)[:, None, None]
    color = color.transpose(1, 2)[:, :, tile].view(-1, 3, canvas.height, canvas.width)  # [T, 3, H, W]
    bg = ctx.color(p["bg"])[None, :, None, None]
    return color.lerp_(bg, (1 - mask)[:, None])


PATTERNS = {
    "kaleido": Visualizer("kaleido", "k-fold mirrored wave interference, phase jumps on hits", sample_kaleido,
                          render_kaleido),
    "tiles": Visualizer("tiles", "grid of band-driven shapes recoloured on beats", sample_tiles, render_tiles),
}

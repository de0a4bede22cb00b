"""The seed project's three visualizers, vectorised and made beat-reactive: pulse, spectrum, waveform."""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from synesthete.settings import Settings
from synesthete.visual.core import (
    SHAPES,
    Context,
    Visualizer,
    bright_color,
    coverage,
    dark_color,
    paint,
    shape_distance,
)


def _beat(rng: random.Random) -> dict:
    """Randomised beat-reaction parameters shared by the visualizers."""
    return {"decay": round(rng.uniform(0.1, 0.2), 3), "flash": round(rng.uniform(0.35, 0.7), 3)}


# ------------------------------------------------------------------------------------------------------ pulse
def sample_pulse(rng: random.Random, settings: Settings) -> dict:
    """1-3 circles, squares or diamonds at random positions and colours."""
    count = rng.randint(1, 3)
    spread = 0.0 if count == 1 else 0.5
    drives = ["level"] * 3 + [f"band_{k}" for k in range(settings.audio.n_bands)]
    shapes = []
    for _ in range(count):
        shapes.append({
            "kind": rng.choice(SHAPES),
            "x": round(rng.uniform(-spread, spread) + rng.uniform(-0.15, 0.15), 3),
            "y": round(rng.uniform(-spread, spread) + rng.uniform(-0.15, 0.15), 3),
            "color": bright_color(rng),
            "base": round(rng.uniform(0.06, 0.14) / math.sqrt(count), 3),
            "gain": round(rng.uniform(0.25, 0.45) / math.sqrt(count), 3),
            "drive": rng.choice(drives),
        })
    return {
        "shapes": shapes,
        "bg": dark_color(rng),
        "style": rng.choice(["fill", "fill", "outline"]),
        "outline": round(rng.uniform(0.03, 0.07), 3),
        "kick": round(rng.uniform(0.08, 0.18), 3),
        **_beat(rng),
    }


def render_pulse(ctx: Context, p: dict) -> torch.Tensor:
    """Shapes sized by loudness (or one band); on a hit they jump in size and flash white, and the bg glows."""
    canvas, drive = ctx.canvas, ctx.drive
    env = drive.envelope(p["decay"])  # [T]
    glow = sum(ctx.color(s["color"]) for s in p["shapes"]) / len(p["shapes"])
    bg = ctx.color(p["bg"]) + 0.25 * env[:, None] * glow  # [T, 3]
    out = None
    for shape in p["shapes"]:
        size = shape["base"] + shape["gain"] * drive.signal(shape["drive"]) + p["kick"] * env  # [T]
        dist = shape_distance(shape["kind"], canvas.x - shape["x"], canvas.y - shape["y"])  # [H, W]
        edge = dist - size[:, None, None]  # [T, H, W] signed distance
        if p["style"] == "outline":
            edge = edge.abs_() - p["outline"] * (1 + env[:, None, None])
        mask = coverage(edge, canvas.pixel)
        color = ctx.flash(shape["color"], p["flash"] * env)  # [T, 3]
        out = paint(bg if out is None else out, mask, color)
    return out


# --------------------------------------------------------------------------------------------------- spectrum
def sample_spectrum(rng: random.Random, settings: Settings) -> dict:
    """Vertical, horizontal or radial bars; 8, 16 or 32 bands; a gradient between two random colours."""
    return {
        "orientation": rng.choice(["vertical", "horizontal", "radial"]),
        "bands": rng.choice([8, 16, 32]),
        "low": bright_color(rng),
        "high": bright_color(rng),
        "gradient": rng.choice(["band", "height"]),
        "bg": dark_color(rng),
        "gap": round(rng.uniform(0.1, 0.35), 3),
        "mirror": rng.random() < 0.4,
        "inner": round(rng.uniform(0.15, 0.35), 3),
        "turn": round(rng.random(), 3),
        "kick": round(rng.uniform(0.1, 0.25), 3),
        **_beat(rng),
    }


def render_spectrum(ctx: Context, p: dict) -> torch.Tensor:
    """Bars follow band energies; a hit lifts every bar and flashes them white."""
    canvas, drive = ctx.canvas, ctx.drive
    n = int(p["bands"])
    env = drive.envelope(p["decay"])  # [T]
    heights = (drive.band_levels(n) * (1 - p["kick"]) + p["kick"] * env[:, None]).clamp(0, 1)  # [T, n]
    x = (canvas.x / canvas.aspect).expand(canvas.height, canvas.width)  # [H, W] in [-1, 1]
    y = canvas.y.expand(canvas.height, canvas.width)
    if p["orientation"] == "radial":
        u = (canvas.theta / math.pi).abs() if p["mirror"] else (canvas.theta / (2 * math.pi) + 0.5 + p["turn"]) % 1
        span = 0.95 - p["inner"]
        along = (canvas.r - p["inner"]) / span  # 0 at the inner circle, 1 at the outer end
        unit = canvas.pixel / span
    else:
        across, up = (x, y) if p["orientation"] == "vertical" else (y, x)
        u = (across + 1) / 2
        along = up.abs() if p["mirror"] else (up + 1) / 2
        unit = canvas.pixel if p["mirror"] else canvas.pixel / 2
    slot = u.clamp(0, 1 - 1e-6) * n
    band = slot.floor().long()  # [H, W] band id of each pixel
    across_units = 2 * math.pi * (p["inner"] + 0.95) / 2 if p["orientation"] == "radial" else 2.0
    gap = coverage((slot - band - 0.5).abs() - (1 - p["gap"]) / 2, n * canvas.pixel / across_units)
    if p["orientation"] == "radial":
        gap = gap * (along >= 0)
    bar = heights[:, band.reshape(-1)].view(-1, canvas.height, canvas.width)  # [T, H, W] gathered heights
    lit = coverage(along - bar, unit).mul_(gap)  # [T, H, W]
    g = (band.float() + 0.5) / n if p["gradient"] == "band" else along.clamp(0, 1)
    low, high = ctx.color(p["low"]), ctx.color(p["high"])
    ramp = low[:, None, None] + g * (high - low)[:, None, None]  # [3, H, W]
    bg = ctx.color(p["bg"])[:, None, None]
    out = (lit[:, None] * (ramp - bg)).add_(bg)  # [T, 3, H, W]
    white = (lit * (p["flash"] * env)[:, None, None])[:, None]  # [T, 1, H, W]
    out.addcmul_(white, 1 - ramp)
    if p["orientation"] == "radial":  # a core disc pulsing with loudness and hits
        radius = p["inner"] * (0.35 + 0.4 * drive.level + 0.4 * env)  # [T]
        core = coverage(canvas.r - radius[:, None, None], canvas.pixel)
        out = paint(out, core, ctx.flash(p["high"], p["flash"] * env))
    return out


# --------------------------------------------------------------------------------------------------- waveform
TRIGGER_SMOOTH = 0.002  # seconds: the trigger looks for zero crossings of the audio smoothed over this span
RING_TAPER = 0.15  # fraction of the ring's samples tapered at each end so the ring closes smoothly
PERSISTENCE_TAPS = 4  # frames of phosphor persistence averaged into the displayed trace
TRACE_REFERENCE = 128  # the canvas height whose pixels set a trace's samples and halo: every size draws one trace


def sample_waveform(rng: random.Random, settings: Settings) -> dict:
    """An oscilloscope line or a deforming ring, with random thickness, colour and time span."""
    return {
        "mode": rng.choice(["line", "ring"]),
        "span": round(rng.uniform(0.012, 0.03), 4),
        "thickness": round(rng.uniform(0.012, 0.035), 4),
        "color": bright_color(rng),
        "bg": dark_color(rng),
        "gain": round(rng.uniform(1.0, 2.0), 3),
        "offset": round(rng.uniform(-0.3, 0.3), 3),
        "radius": round(rng.uniform(0.35, 0.55), 3),
        "persistence": round(rng.uniform(0.3, 0.7), 3),
        "glow": round(rng.uniform(0.3, 0.6), 3),
        "kick": round(rng.uniform(1.0, 2.0), 3),
        **_beat(rng),
    }


def _triggered_frames(ctx: Context, span: float, points: int, persistence: float) -> torch.Tensor:
    """Each frame's audio as an oscilloscope shows it: [T, points].

    A ``span``-second window starting at the first rising zero crossing of the (smoothed) audio after the
    frame's start, so periodic sounds stand still; area-resampled (anti-aliased) to the points the trace has on
    a ``TRACE_REFERENCE``-pixel canvas and mixed with the previous frames' traces (phosphor persistence) so
    noise does not flicker; then resampled to ``points`` (linear), so every canvas size draws the same trace.
    """
    sr, fps = ctx.drive.settings.audio.sample_rate, ctx.drive.fps
    reference = max(2, round(points * TRACE_REFERENCE / ctx.canvas.height))
    length = max(reference, round(span * sr))
    search = math.ceil(sr / fps)
    seg = ctx.drive.frame_audio(length + search)  # [T, L + S]
    smooth = max(1, round(TRIGGER_SMOOTH * sr)) | 1
    low = F.avg_pool1d(seg[:, None, : search + 1 + smooth], smooth, 1)[:, 0]  # [T, S + 1]
    rising = (low[:, :-1] < 0) & (low[:, 1:] >= 0)  # [T, S]
    start = rising.float().argmax(1)  # first rising crossing (0 if none)
    window = seg.gather(1, start[:, None] + torch.arange(length, device=seg.device))  # [T, L]
    trace = F.interpolate(window[:, None], size=reference, mode="area")[:, 0]  # [T, R]
    decay = persistence / (1 - persistence)  # frames
    weights = torch.exp(-torch.arange(PERSISTENCE_TAPS - 1, -1, -1, device=seg.device) / decay)  # oldest first
    history = F.pad(trace.T, (PERSISTENCE_TAPS - 1, 0), mode="replicate").unfold(1, PERSISTENCE_TAPS, 1)
    trace = (history * weights).sum(-1).T / weights.sum()  # [T, R]
    if points == reference:
        return trace
    return F.interpolate(trace[:, None], size=points, mode="linear", align_corners=False)[:, 0]  # [T, P]


def render_waveform(ctx: Context, p: dict) -> torch.Tensor:
    """The raw samples of each frame's time span; a hit thickens and brightens the trace and makes it glow."""
    canvas, drive = ctx.canvas, ctx.drive
    env = drive.envelope(p["decay"])  # [T]
    thick = p["thickness"] * (1 + p["kick"] * env)  # [T]
    if p["mode"] == "line":
        wave = _triggered_frames(ctx, p["span"], canvas.width, p["persistence"]) * p["gain"]  # [T, W]
        centre = p["offset"] + wave.clamp(-1, 1) * (1 - abs(p["offset"]))
        slope = torch.gradient(centre, spacing=canvas.pixel, dim=1)[0]  # [T, W]
        width = thick[:, None] * torch.sqrt(1 + slope**2)  # thickness measured across a steep trace
        dist = (canvas.y[None] - centre[:, None, :]).abs_()  # [T, H, W]
        dist.sub_(width[:, None, :])
    else:
        points = 2 * (canvas.width + canvas.height)
        wave = _triggered_frames(ctx, p["span"], points, p["persistence"]) * p["gain"]  # [T, P]
        u = torch.linspace(0, 1, points, device=wave.device)
        taper = (torch.minimum(u, 1 - u) / RING_TAPER).clamp(max=1)
        wave = wave.clamp(-1, 1) * taper * p["radius"] * 0.6
        pos = (canvas.theta / (2 * math.pi) + 0.5) * (points - 1)  # [H, W] fractional sample index
        lo = pos.floor().long().clamp(0, points - 2)
        frac = pos - lo
        flat = lo.reshape(-1)
        near = wave[:, flat] + (wave[:, flat + 1] - wave[:, flat]) * frac.reshape(-1)  # [T, HW]
        radius = p["radius"] * (1 + 0.15 * drive.level + 0.1 * env)  # [T]
        dist = (canvas.r.reshape(-1) - radius[:, None] - near).abs_().sub_(thick[:, None])
        dist = dist.view(-1, canvas.height, canvas.width)
    core = coverage(dist, canvas.pixel)  # [T, H, W]
    halo = (1 - dist / (4 * p["thickness"] + 4 / TRACE_REFERENCE)).clamp_(0, 1).square_()  # + 2 reference pixels
    lum = torch.maximum(core, halo.mul_((p["glow"] * (0.3 + env))[:, None, None]))
    bg = ctx.color(p["bg"]) + 0.2 * env[:, None] * ctx.color(p["color"])  # [T, 3] the screen glows on a hit
    return paint(bg, lum, ctx.flash(p["color"], p["flash"] * env))


CLASSIC = {
    "pulse": Visualizer(
        "pulse", "1-3 shapes sized by loudness, jumping and flashing on hits", sample_pulse, render_pulse
    ),
    "spectrum": Visualizer(
        "spectrum", "8/16/32 band bars (vertical, horizontal, radial)", sample_spectrum, render_spectrum
    ),
    "waveform": Visualizer(
        "waveform", "triggered oscilloscope line or deforming ring", sample_waveform, render_waveform
    ),
}

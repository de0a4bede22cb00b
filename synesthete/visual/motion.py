"""Motion visualizers built from Gaussian points: onset-burst particles and feedback trails.

Both are rendered by :meth:`Canvas.splat` (a batched matmul of separable Gaussians), so their cost grows
with the number of points, not with a per-frame loop.
"""

from __future__ import annotations

import math
import random

import torch

from synesthete.settings import Settings
from synesthete.visual.core import Context, Visualizer, bright_color, dark_color, hash01, paint

TRAIL_SUBSTEPS = 3  # points per frame of trail history (motion-blur samples between frames)
TRAIL_CUTOFF = 0.05  # trail points weaker than this (relative to the head) are dropped
PARTICLE_GENERATIONS = 2  # bursts alive at once: the latest one and the one before it
BURST_HEAD_START = 0.5  # frames: a burst is already this far along when its onset frame is shown


# -------------------------------------------------------------------------------------------------- particles
def sample_particles(rng: random.Random, settings: Settings) -> dict:
    """A burst of particles from an origin on every onset, with drag, gravity and fading."""
    return {
        "count": rng.randint(24, 64),
        "speed": round(rng.uniform(0.5, 1.0), 3),
        "drag": round(rng.uniform(0.1, 0.25), 3),
        "fade": round(rng.uniform(0.2, 0.4), 3),
        "size": round(rng.uniform(0.02, 0.045), 4),
        "gravity": round(rng.uniform(0.0, 0.8), 3),
        "origin": rng.choice(["center", "fixed", "random"]),
        "x": round(rng.uniform(-0.4, 0.4), 3),
        "y": round(rng.uniform(-0.4, 0.4), 3),
        "colors": [bright_color(rng), bright_color(rng)],
        "glow": bright_color(rng),
        "bg": dark_color(rng),
        "seed": rng.randrange(1 << 30),
        "decay": round(rng.uniform(0.1, 0.2), 3),
        "flash": round(rng.uniform(0.3, 0.6), 3),
    }


def render_particles(ctx: Context, p: dict) -> torch.Tensor:
    """Each event launches a new burst (scaled by the hit) and alternates colour; a core glows with loudness."""
    canvas, drive = ctx.canvas, ctx.drive
    seed, count = int(p["seed"]), int(p["count"])
    env = drive.envelope(p["decay"])  # [T]
    pid = torch.arange(count, device=ctx.device)
    xs, ys, sigmas, weights = [], [], [], []
    for back in range(PARTICLE_GENERATIONS):
        number, age, valid = drive.since_event(back)  # [T]
        seconds = ((age.float() + BURST_HEAD_START) / drive.fps)[:, None]  # [T, 1]
        strength = drive.hit[(torch.arange(drive.frames, device=ctx.device) - age).clamp(0, drive.frames - 1)]
        key = number[:, None]
        angle = 2 * math.pi * hash01(seed, key, pid)  # [T, P]
        speed = p["speed"] * (0.3 + 0.7 * hash01(seed + 1, key, pid))
        if p["origin"] == "random":
            ox = (hash01(seed + 2, key) - 0.5) * 1.2 * canvas.aspect
            oy = (hash01(seed + 3, key) - 0.5) * 1.2
        else:
            ox, oy = (0.0, 0.0) if p["origin"] == "center" else (p["x"], p["y"])
        travel = speed * (1 - torch.exp(-seconds / p["drag"]))
        xs.append(ox + travel * torch.cos(angle))
        ys.append(oy + travel * torch.sin(angle) - 0.5 * p["gravity"] * seconds**2)
        sigmas.append(p["size"] * (0.6 + 0.8 * hash01(seed + 4, key, pid)) * (1 + torch.exp(-seconds / p["drag"])))
        weights.append((strength * valid)[:, None] * torch.exp(-seconds / p["fade"]).expand(-1, count))
    lum = canvas.splat(torch.cat(xs, 1), torch.cat(ys, 1), torch.cat(sigmas, 1), torch.cat(weights, 1))
    lum = lum.clamp_(0, 1)  # [T, H, W]
    # The core glow: one broad Gaussian at the centre, sized and lit by loudness and hits.
    zero = torch.zeros(drive.frames, 1, device=ctx.device)
    radius = (0.08 + 0.2 * drive.level + 0.12 * env)[:, None]
    core = canvas.splat(zero, zero, radius, (0.45 * drive.level + 0.5 * env)[:, None]).clamp_(0, 1)
    out = paint(ctx.color(p["bg"]), core, ctx.flash(p["glow"], p["flash"] * env))
    palette = torch.stack([ctx.color(c) for c in p["colors"]])  # [2, 3]
    color = palette[drive.event_index % 2]  # [T, 3] alternates on every burst
    color = color + (1 - color) * (p["flash"] * env)[:, None]
    return paint(out, lum, color)


# ------------------------------------------------------------------------------------------------------ trails
def sample_trails(rng: random.Random, settings: Settings) -> dict:
    """1-3 glowing heads on Lissajous paths leaving exponentially decaying feedback trails."""
    heads = []
    for _ in range(rng.randint(1, 3)):
        heads.append({
            "fx": rng.choice([1, 2, 3]),
            "fy": rng.choice([1, 2, 3]),
            "phase": round(rng.uniform(0, 2 * math.pi), 3),
            "radius": round(rng.uniform(0.4, 0.8), 3),
            "color": bright_color(rng),
        })
    return {
        "heads": heads,
        "speed": round(rng.uniform(0.5, 1.2), 3),
        "boost": round(rng.uniform(6.0, 10.0), 3),
        "trail": round(rng.uniform(0.08, 0.2), 3),
        "size": round(rng.uniform(0.025, 0.05), 4),
        "zoom": round(rng.uniform(0.0, 0.03), 4),
        "spin": round(rng.uniform(-0.03, 0.03), 4),
        "kick": round(rng.uniform(1.0, 1.6), 3),
        "bg": dark_color(rng),
        "decay": round(rng.uniform(0.1, 0.2), 3),
        "flash": round(rng.uniform(0.3, 0.6), 3),
    }


def render_trails(ctx: Context, p: dict) -> torch.Tensor:
    """Heads move with loudness and sprint on hits (swelling and flashing); their past positions decay.

    The trail is a causal exponential filter over the frame axis. Rendering is linear in the point weights,
    so filtering the frames equals drawing each head's recent history (``TRAIL_SUBSTEPS`` points per frame,
    weight ``exp(-age / trail)``, drifting by the feedback zoom/spin with age) in the same splat.
    """
    canvas, drive = ctx.canvas, ctx.drive
    env = drive.envelope(p["decay"])  # [T]
    frames = drive.frames
    decay_frames = p["trail"] * drive.fps
    taps = max(1, math.ceil(decay_frames * math.log(1 / TRAIL_CUTOFF)))
    age = torch.arange(taps * TRAIL_SUBSTEPS, device=ctx.device) / TRAIL_SUBSTEPS  # [Q] frames back
    # Before the clip starts the heads rest where they begin, so a silent clip is still from frame 0.
    when = (torch.arange(frames, device=ctx.device)[:, None] - age).clamp(min=0)  # [T, Q] fractional frame
    i0 = when.floor().long()
    i1 = (i0 + 1).clamp(max=frames - 1)
    frac = when - i0
    # Phase at the end of each frame; a point between frames interpolates it (a motion-blur sample).
    phase = drive.integrate(p["speed"] * drive.level + p["boost"] * env)  # [T]
    theta = phase[i0] + (phase[i1] - phase[i0]) * frac  # [T, Q]
    hist_env = env[i1]
    weight = torch.exp(-age / decay_frames) * (0.5 + 0.3 * drive.level[i1] + 0.7 * hist_env)  # [T, Q]
    sigma = p["size"] * (1 + p["kick"] * hist_env) * (1 - 0.5 * age / (taps + 1))
    scale = (1 + p["zoom"]) ** age  # feedback zoom and spin act on older points
    spin = p["spin"] * age
    glow = sum(ctx.color(h["color"]) for h in p["heads"]) / len(p["heads"])
    out = ctx.color(p["bg"]) + 0.15 * env[:, None] * glow  # [T, 3] the whole screen glows on a hit
    for head in p["heads"]:
        hx = head["radius"] * torch.sin(head["fx"] * theta + head["phase"])
        hy = head["radius"] * torch.sin(head["fy"] * theta)
        px = (hx * torch.cos(spin) - hy * torch.sin(spin)) * scale * canvas.aspect
        py = (hx * torch.sin(spin) + hy * torch.cos(spin)) * scale
        lum = canvas.splat(px, py, sigma, weight).clamp_(0, 1)  # [T, H, W]
        out = paint(out, lum, ctx.flash(head["color"], p["flash"] * env))
    return out


MOTION = {
    "particles": Visualizer("particles", "particle bursts launched by every onset", sample_particles,
                            render_particles),
    "trails": Visualizer("trails", "Lissajous heads with decaying feedback trails, sprinting on hits",
                         sample_trails, render_trails),
}

"""Training throughput at the shipped (cpu preset) sizes, against the device's measured matmul throughput.

    uv run python benchmarks/train.py [--steps 6] [--preset cpu] [--device cpu]

Prints JSON: VAE training images/s and diffusion training samples/s, each both for the optimisation step
alone (a fixed batch through the real loss, backward and AdamW) and end to end (the real trainer, with the
data engine making the fresh clips of every step), the parameter counts, model FLOPs per step (forward +
backward counted as 3x the forward FLOPs from torch's FlopCounterMode), the device's GFLOP/s on a large
float32 ``torch.mm`` (best of several measurements, as the machine may be shared) and the fraction each
reaches. ``--device cuda`` measures a GPU (the data engine stays on the CPU, in ``data.num_workers``
processes); batch sizes and workers come from the settings (``SYNESTHETE_DIFFUSION__BATCH_SIZE`` ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch

from synesthete.checkpoint import make_checkpoint, save_checkpoint
from synesthete.device import autocast, best_seconds, precision, resolve_device
from synesthete.models import count_flops, count_params
from synesthete.models.dit import DiT
from synesthete.models.vae import VAE, vae_loss
from synesthete.sampling import NoiseSchedule
from synesthete.settings import load_settings
from synesthete.train.diffusion import train_diffusion
from synesthete.train.losses import diffusion_loss
from synesthete.train.vae import train_vae

MATMUL_SIZE = 2048


def matmul_gflops(device: torch.device, size: int = MATMUL_SIZE, repeats: int = 10) -> float:
    """Best GFLOP/s of a float32 [size x size] @ [size x size] torch.mm on ``device``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / timed_steps(lambda: torch.mm(a, b), repeats, device) / 1e9


def timed_steps(step, steps: int, device: torch.device) -> float:
    """Seconds per call of ``step()`` (after one warm-up call), best of ``steps`` calls."""
    step()
    return best_seconds(step, steps, device)


def vae_figures(settings, steps: int, device: torch.device) -> dict:
    """The VAE's optimisation step on a fixed batch of frames."""
    torch.manual_seed(0)
    model = VAE.from_settings(settings).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.vae.lr)
    b = settings.vae.batch_size
    x = torch.rand(b, 3, settings.video.height, settings.video.width, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, settings.train.amp):  # as the trainer runs it
            recon, mean, logvar = model(x)
            loss, _ = vae_loss(recon, x, mean, logvar, settings.vae.kl_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.train.grad_clip)
        opt.step()

    seconds = timed_steps(step, steps, device)
    flops = 3 * count_flops(model, x[:1]) * b  # forward + backward ~ 3x forward
    return {"parameters": count_params(model), "batch": b, "model_flops_per_step": flops,
            "step_seconds": seconds, "images_per_s": b / seconds}


def diffusion_figures(settings, steps: int, device: torch.device) -> dict:
    """The DiT's optimisation step (correct + shuffled audio in one batch, VAE encoding of the windows)."""
    from synesthete.audio.features import num_features

    torch.manual_seed(0)
    ds = settings.diffusion
    model = DiT.from_settings(settings).to(device)
    vae = VAE.from_settings(settings).to(device).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=ds.lr)
    schedule = NoiseSchedule(model.config)
    b, w, c, h = ds.batch_size, model.config.window, settings.vae.latent_channels, settings.latent_size
    frames = torch.rand(b * w, 3, settings.video.height, settings.video.width, device=device)
    features = torch.rand(b, w + 2 * model.config.audio_context, num_features(settings.audio), device=device)
    gen = torch.Generator().manual_seed(0)  # CPU draws, as the trainer makes them

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, settings.train.amp):  # as the trainer runs it
            with torch.no_grad():
                x0 = vae.encode(frames)[0].float().view(b, w, c, h, h)
            loss = diffusion_loss(model, schedule, x0, features, settings, gen).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.train.grad_clip)
        opt.step()

    seconds = timed_steps(step, steps, device)
    passes = 2 if ds.hinge_weight > 0 else 1
    dit_flops = count_flops(model, torch.randn(1, w, c, h, h, device=device),
                            torch.zeros(1, dtype=torch.long, device=device), features[:1],
                            torch.zeros(1, dtype=torch.bool, device=device))
    encode_flops = count_flops(vae.encoder, frames[:1]) * w
    flops = (3 * dit_flops * passes + encode_flops) * b
    return {"parameters": count_params(model), "batch": b, "window": w, "forward_passes_per_sample": passes,
            "model_flops_per_step": flops, "step_seconds": seconds, "samples_per_s": b / seconds}


def end_to_end(settings, steps: int, workdir: Path) -> dict:
    """The real trainers (data engine included): median seconds per step, from TensorBoard's per-step rate."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    os.chdir(workdir)
    torch.manual_seed(0)
    # Random weights do.
    save_checkpoint(make_checkpoint("vae", VAE.from_settings(settings), settings), workdir / "vae.pt")
    out = {}
    # Log every step; no previews or checkpoints inside the timed steps.
    train = {"log_every": 1, "image_every": 10**6, "checkpoint_every": 10**6, "eval_every": 10**6}
    for kind in ("vae", "diffusion"):
        s = settings.updated(**{kind: {"max_steps": 1 + steps}}, train={**train, "run_name": kind})
        if kind == "vae":
            train_vae(s)
        else:
            train_diffusion(s, vae_path=workdir / "vae.pt")
        events = EventAccumulator(str(workdir / "runs" / kind))
        events.Reload()
        rates = [e.value for e in events.Scalars("train/steps_per_s")][1:]  # drop the first step
        seconds = statistics.median(1 / r for r in rates)
        batch = settings.vae.batch_size if kind == "vae" else settings.diffusion.batch_size
        out[kind] = {"step_seconds": seconds, "per_s": batch / seconds}
    return out


def main() -> None:
    """Run the benchmark and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="Timed optimisation steps per measurement.")
    parser.add_argument("--preset", default="cpu", help="Model-size preset to measure.")
    parser.add_argument("--device", default="cpu", help="Device to measure: cpu, cuda, cuda:N or mps.")
    parser.add_argument("--skip-end-to-end", action="store_true", help="Only time the optimisation steps.")
    args = parser.parse_args()

    settings = load_settings(args.preset, device=args.device)
    device = resolve_device(args.device)
    # The machine may be shared: measure the matmul peak around each measurement and keep the best.
    peaks = [matmul_gflops(device)]
    vae = vae_figures(settings, args.steps, device)
    peaks.append(matmul_gflops(device))
    dit = diffusion_figures(settings, args.steps, device)
    peaks.append(matmul_gflops(device))
    gflops = max(peaks)
    for fig in (vae, dit):
        fig["model_gflop_per_s"] = fig["model_flops_per_step"] / fig["step_seconds"] / 1e9
        fig["fraction_of_matmul"] = fig["model_gflop_per_s"] / gflops
    report = {
        "preset": args.preset,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "data_workers": settings.data.num_workers,
        "precision": precision(device, settings.train.amp),
        "matmul_gflop_per_s": gflops,
        "matmul_gflop_per_s_samples": peaks,
        "load_average_1min": os.getloadavg()[0],
        "matmul_size": MATMUL_SIZE,
        "vae": vae,
        "diffusion": dit,
    }
    if not args.skip_end_to_end:
        with tempfile.TemporaryDirectory() as tmp:
            e2e = end_to_end(settings, args.steps, Path(tmp))
        for kind, fig in (("vae", vae), ("diffusion", dit)):
            seconds = e2e[kind]["step_seconds"]
            fig["end_to_end_step_seconds"] = seconds
            fig["end_to_end_" + ("images_per_s" if kind == "vae" else "samples_per_s")] = e2e[kind]["per_s"]
            fig["end_to_end_fraction_of_matmul"] = fig["model_flops_per_step"] / seconds / 1e9 / gflops
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

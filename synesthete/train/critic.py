"""`synesthete train critic`: the style critic learns to name the visualizer families in a frame.

Each batch takes ``critic.batch_size`` random frames from the clip pool (the same infinite data engine and
pool as the VAE), labelled with the multi-hot families of their clip (``styles.clip_style``). So that the
critic judges pictures, not codecs or sharpness alone:

* a share ``critic.h264_prob`` of the clips entering the pool is round-tripped through H.264 at a random
  CRF in ``H264_CRF`` (real libx264: the ``ffmpeg`` program, or torchcodec), as rendered and downloaded videos are;
* a share ``critic.junk_prob`` of every batch is replaced by unrecognisable frames labelled with no family:
  real frames under a heavy blur, or smooth random colour fields. A picture that has lost its shapes then
  scores low on every family, instead of being forced into the nearest one.

Loss: binary cross-entropy per family. At the end (and at every image log) the critic is scored on
held-out clips, and the 99th percentile of its feature distance between consecutive oracle frames is
stored in the checkpoint: ``metrics.picture.cut_rate`` uses it as the threshold of a "cut".
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.checkpoint import export_checkpoint, make_checkpoint
from synesthete.data import make_clip, one_thread, seed_for
from synesthete.media import to_unit
from synesthete.media.backend import torchcodec
from synesthete.media.stream import ffmpeg_binary
from synesthete.models import count_params
from synesthete.models.critic import CriticConfig, StyleCritic, critic_outputs
from synesthete.settings import Settings
from synesthete.styles import clip_style, families, style_vector
from synesthete.train.loop import LATEST, TrainingRun, make_optimizer

H264_CRF = (18, 34)  # CRF range of the H.264 round trip augmentation
JUNK_BLUR = (4.0, 10.0)  # Gaussian sigma (pixels at 128x128) of blurred junk frames
CUT_PERCENTILE = 0.99


def h264_roundtrip(frames: torch.Tensor, fps: int, crf: int) -> torch.Tensor:
    """uint8 frames [T, 3, H, W] -> the same frames after libx264 (yuv420p) encoding and decoding.

    The ``ffmpeg`` program encodes where it is on PATH: its bytes are a pure function of the frames, so the
    critic's training repeats (and a resumed run continues exactly). torchcodec's encoder, the fallback, gave
    different bytes for the same frames now and then, even on one thread.
    """
    codec = torchcodec()
    binary = ffmpeg_binary()
    if binary is None:
        data = codec.encoders.VideoEncoder(frames.contiguous(), frame_rate=fps).to_tensor(
            "mp4", codec="libx264", pixel_format="yuv420p", crf=crf, preset="veryfast"
        )
    else:
        h, w = frames.shape[-2:]
        raw = frames.permute(0, 2, 3, 1).contiguous().numpy().tobytes()
        command = [binary, "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                   "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                   "-pix_fmt", "yuv420p", "-f", "matroska", "-"]
        done = subprocess.run(command, input=raw, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg could not encode H.264: {done.stderr.decode(errors='replace').strip()}")
        data = torch.frombuffer(bytearray(done.stdout), dtype=torch.uint8)
    return codec.decoders.VideoDecoder(data)[:].contiguous()  # [T, 3, H, W] uint8


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] with reflect padding."""
    radius = max(1, int(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    kernel = kernel[kernel.numel() // 2 - radius : kernel.numel() // 2 + radius + 1]
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def junk_frames(real: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Unrecognisable frames [B, 3, H, W] in [0, 1]: half heavily blurred real frames, half colour fields."""
    b, _, h, w = real.shape
    out = torch.empty_like(real)
    half = b // 2
    if half:
        sigma = float(torch.empty(()).uniform_(*JUNK_BLUR, generator=generator)) * h / 128
        out[:half] = gaussian_blur(real[:half], sigma)
    if b - half:
        coarse = torch.rand(b - half, 3, 3, 3, generator=generator)  # 3x3 random colours, upsampled smoothly
        scale = torch.rand(b - half, 1, 1, 1, generator=generator)
        out[half:] = F.interpolate(coarse * scale, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return out


class CriticData:
    """Wraps the clip pool: labels, H.264 round trips on clips entering it, and junk frames."""

    def __init__(self, run: TrainingRun, position: int) -> None:
        self.settings = run.settings
        self.pool = run.clip_pool(position, transform=self.transform)

    def transform(self, clip: dict, index: int) -> dict:
        """Round-trip a share of the clips through H.264 (decided by the clip's stream index: reproducible)."""
        rng = random.Random(f"synesthete-critic-h264:{index}")
        if rng.random() < self.settings.critic.h264_prob:
            clip = dict(clip, frames=h264_roundtrip(clip["frames"], self.settings.video.fps, rng.randint(*H264_CRF)))
        return clip

    def batch(self, count: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [B, 3, H, W] in [0, 1] on ``device`` and multi-hot targets [B, S]."""
        frames, styles = self.pool.labelled_frames(count, generator)
        x = to_unit(frames, device)
        y = styles.to(device)
        n_junk = int(round(count * self.settings.critic.junk_prob))
        if n_junk:
            x[:n_junk] = junk_frames(x[:n_junk], generator)
            y[:n_junk] = 0
        return x, y


def heldout_scores(critic: nn.Module, settings: Settings, clips: int) -> dict[str, Any]:
    """Score the critic on ``clips`` held-out clips (as drawn, and after H.264): per-family accuracy on
    single-family clips (top family == the clip's family), the confusion table, multi-label F1 on composed
    clips, and the cut threshold (99th percentile of consecutive-frame feature distances)."""
    names = families()
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    confusion_h264 = torch.zeros_like(confusion)
    tp = fp = fn = 0
    steps: list[torch.Tensor] = []
    was_training = critic.training
    critic.eval()
    for i in range(clips):
        with one_thread():
            clip = make_clip(seed_for(i, settings, "heldout"), settings)
        label = clip_style(clip["meta"])
        for video, table in ((clip["frames"], confusion), (h264_roundtrip(clip["frames"], settings.video.fps, 28),
                                                           confusion_h264)):
            probs, feats = critic_outputs(critic, video)
            if len(label) == 1:
                truth = names.index(label[0])
                table[truth].index_add_(0, probs.argmax(1), torch.ones(probs.shape[0], dtype=torch.long))
            elif table is confusion:
                pred = probs > 0.5
                target = style_vector(label).bool()[None].expand_as(pred)
                tp += int((pred & target).sum())
                fp += int((pred & ~target).sum())
                fn += int((~pred & target).sum())
            if table is confusion:
                steps.append((feats[1:] - feats[:-1]).norm(dim=1))
    critic.train(was_training)

    def per_family(table: torch.Tensor) -> dict[str, float]:
        totals = table.sum(1)
        return {n: float(table[k, k] / totals[k]) for k, n in enumerate(names) if totals[k] > 0}

    distances = torch.cat(steps) if steps else torch.zeros(1)
    return {
        "accuracy": per_family(confusion),
        "accuracy_h264": per_family(confusion_h264),
        "confusion": confusion.tolist(),
        "composed_f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "cut_threshold": float(torch.quantile(distances, CUT_PERCENTILE)),
    }


def train_critic(
    settings: Settings, resume: str | Path | None = None, export: str | Path | None = None
) -> dict[str, Any]:
    """Train the style critic under runs/<run-name>/; optionally export compact weights to ``export``/critic.pt."""
    cs, ts = settings.critic, settings.train
    with TrainingRun("critic", settings, resume) as run:
        torch.manual_seed(ts.seed)
        model = StyleCritic(CriticConfig.from_settings(settings)).to(run.device)
        optimizer, scheduler = make_optimizer(model, cs.lr, cs.max_steps, settings)
        step, position = run.restore(model, optimizer, scheduler)
        train_model: nn.Module = run.wrap(model)
        micro = max(1, cs.batch_size // (run.dist.world_size * ts.grad_accum))
        data = CriticData(run, position)
        scores: dict[str, Any] = dict(run.resume_ckpt.get("scores", {})) if run.resume_ckpt else {}

        def checkpoint() -> dict[str, Any]:
            return make_checkpoint(
                "critic", model, settings, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                step=step, data_position=data.pool.position, families=families(),
                cut_threshold=float(scores.get("cut_threshold", float("nan"))), scores=scores,
            )

        run.start_progress(step, cs.max_steps)
        while step < cs.max_steps:
            gen = run.seed_step(step)
            data.pool.refresh()
            batches = [data.batch(micro, gen, run.device) for _ in range(ts.grad_accum)]

            def loss_fn(i: int, batches=batches) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
                x, y = batches[i]
                logits, _ = train_model(x)
                loss = F.binary_cross_entropy_with_logits(logits.float(), y)
                real = y.sum(1) > 0
                acc = ((logits.argmax(1) == y.argmax(1)) | ~real).float().mean() if real.any() else loss.new_ones(())
                return loss, {"top1_or_none": acc.detach()}, x.shape[0]

            result = run.optimize(train_model, optimizer, scheduler, loss_fn, step)
            step += 1
            run.log_step(step, result, scheduler.get_last_lr()[0], unit="images")
            final = step == cs.max_steps
            if run.dist.is_main and (step % ts.image_every == 0 or final or run.stop_requested):
                scores = heldout_scores(model, settings, cs.heldout_clips if final else max(1, cs.heldout_clips // 4))
                for name, value in scores["accuracy"].items():
                    run.scalar(f"critic_heldout/accuracy_{name}", value, step)
                for name, value in scores["accuracy_h264"].items():
                    run.scalar(f"critic_heldout_h264/accuracy_{name}", value, step)
                run.scalar("critic_heldout/composed_f1", scores["composed_f1"], step)
            run.maybe_checkpoint(step, cs.max_steps, checkpoint)

        accuracy = scores.get("accuracy", {})
        summary = run.summary(step, {
            "parameters": count_params(model),
            "worst single-family accuracy": min(accuracy.values()) if accuracy else float("nan"),
            "worst after H.264": min(scores.get("accuracy_h264", {}).values() or [float("nan")]),
            "composed F1": scores.get("composed_f1", float("nan")),
        })
        if export is not None and run.dist.is_main:
            summary["exported"] = str(export_checkpoint(run.folder / LATEST, export))
    return summary

"""What both trainers share: the run folder, TensorBoard, progress, signals, DDP, LR schedule, NaN guard.

A trainer reads top to bottom (see ``train/vae.py``)::

    with TrainingRun("vae", settings, resume) as run:       # DDP setup, run folder, SummaryWriter, signals
        model, optimizer, scheduler = ...
        step, position = run.restore(model, optimizer, scheduler)
        pool = run.clip_pool(position)                      # recent clips; batches draw from all of them
        while step < max_steps:
            gen = run.seed_step(step)                       # all randomness derives from (seed, step, rank)
            pool.refresh()                                  # + train.fresh_clips new clips
            result = run.optimize(ddp_model, optimizer, scheduler, loss_fn, step)   # accum, clip, NaN guard
            step += 1
            run.log_step(step, result, ...)                 # TensorBoard scalars + progress bar
            run.maybe_checkpoint(step, max_steps, make_ckpt)  # every N steps, at the end, and on Ctrl-C/SIGTERM

Determinism: every random draw of a step (which frames, noise, timesteps, CFG drops) comes from a
generator seeded with (seed, step, rank), and the global torch RNG is re-seeded the same way, so a run
resumed from a checkpoint at step k draws exactly what the uninterrupted run drew at step k. The data
stream position (clips consumed by this rank) is stored too: the resumed run re-makes the clip pool it
had and continues the stream where it was.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from synesthete.checkpoint import load_checkpoint, load_weights, save_checkpoint
from synesthete.console import err_console, make_train_progress
from synesthete.data import ClipPool
from synesthete.device import autocast, precision
from synesthete.errors import CheckpointError, OutputError, TrainingError
from synesthete.files import check_folder, remove_stale_temps, write_text
from synesthete.locks import FileLock, run_folder_lock
from synesthete.settings import Settings
from synesthete.threads import ThreadTuner
from synesthete.train.dist import StopRequest, any_rank, setup_distributed

LATEST = "ckpt_latest.pt"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training after a checkpoint was saved (the CLI exits with code 130)."""


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one step's random draws: a pure function of (seed, step, rank)."""
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**63 - 1)


# --------------------------------------------------------------------------------------------- optimisation
def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``max_steps``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    model: nn.Module, lr: float, max_steps: int, settings: Settings
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW plus the warm-up/cosine LambdaLR (its state dict holds only plain numbers)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=settings.train.weight_decay)
    train = settings.train

    def factor(step: int) -> float:
        return lr_factor(step, train.warmup_steps, max_steps, train.min_lr_ratio)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class StepResult:
    """What one optimisation step measured (plain floats, averaged over micro-batches)."""

    loss: float
    logs: dict[str, float]
    grad_norm: float
    samples: int  # samples processed by this rank in this step


# --------------------------------------------------------------------------------------------- the run
HPARAM_SECTIONS = {"diffusion": ("dit", "diffusion")}  # a trainer's own sections, where it has more than one


def hparam_values(kind: str, settings: Settings) -> dict[str, Any]:
    """The hyperparameters a run logs to TensorBoard's HParams tab: the preset, the trained network's section
    (``vae``, ``diffusion`` with the DiT's architecture ``dit``, or ``critic``), ``train`` and ``video``, flattened
    to ``section.field`` with values TensorBoard takes (numbers, strings, booleans; lists as text)."""
    data = settings.model_dump(mode="json")
    out: dict[str, Any] = {"preset": data["preset"]}
    for section in (*HPARAM_SECTIONS.get(kind, (kind,)), "train", "video"):
        for key, value in data.get(section, {}).items():
            if not isinstance(value, bool | int | float | str):
                value = "" if value is None else str(value)
            out[f"{section}.{key}"] = value
    return out


def resolve_resume(path: str | Path) -> Path:
    """A checkpoint file, or a run folder meaning its ckpt_latest.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / LATEST
    if not path.exists():
        raise CheckpointError(f"cannot resume: {path} does not exist")
    return path


def _run_folder(kind: str, settings: Settings, resume: Path | None) -> Path:
    runs = Path(settings.paths.runs)
    if settings.train.run_name:
        folder = runs / settings.train.run_name
    elif resume is not None:
        return resume.parent  # keep writing into the run being resumed
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = runs / f"{kind}-{stamp}"
        suffix = 1
        while folder.exists():
            suffix += 1
            folder = runs / f"{kind}-{stamp}-{suffix}"
    if resume is None and (folder / LATEST).exists():
        raise OutputError(
            f"run folder {folder} already holds a checkpoint: continue it with --resume {folder}, "
            "or pick another --run-name"
        )
    return folder


@dataclass
class _Meter:
    """Sums of logged values between two TensorBoard writes."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    samples: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, values: dict[str, float], samples: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.samples += samples

    def reset(self) -> None:
        self.sums.clear()
        self.steps = 0
        self.samples = 0
        self.start = time.perf_counter()


class TrainingRun:
    """One training run: DDP, run folder, TensorBoard writer, progress bar, signals, checkpoints."""

    def __init__(self, kind: str, settings: Settings, resume: str | Path | None = None) -> None:
        self.kind = kind
        self.settings = settings
        self.dist, self.device = setup_distributed(settings)
        self.resume_path = resolve_resume(resume) if resume is not None else None
        self.resume_ckpt: dict[str, Any] | None = None
        if self.resume_path is not None:
            self.resume_ckpt = load_checkpoint(self.resume_path, kind, settings)
            if "optimizer" not in self.resume_ckpt:
                raise CheckpointError(
                    f"cannot resume from {self.resume_path}: it is an exported checkpoint (weights only); "
                    f"resume from a run checkpoint such as runs/<name>/{LATEST}"
                )
        self.folder = _run_folder(kind, settings, self.resume_path)
        if self.dist.is_main:
            check_folder(self.folder, "run folder")  # before any model is built or clip made
        self._lock: FileLock | None = None
        self._created_folder = False
        self.writer = None
        self.stop = StopRequest()
        self.last_good: tuple[Path, int] | None = None
        self.progress = None
        self._task = None
        self._meter = _Meter()
        self.history: list[float] = []  # loss of every step of this process (rank 0), for the summary
        self.start_step = 0
        self._stop_agreed = False
        # CPU threads chosen step by step for a shared machine (synesthete.threads); under torchrun each rank
        # keeps the OMP_NUM_THREADS the launcher gave it.
        self.tuner = None
        if self.device.type == "cpu" and not self.dist.enabled:
            self.tuner = ThreadTuner()

    # -- context ------------------------------------------------------------------------------------
    def __enter__(self) -> TrainingRun:
        if self.dist.is_main:
            # One job per run folder: a second `--run-name` twin is refused instead of interleaving events.
            self._created_folder = not self.folder.exists()
            self._lock = run_folder_lock(self.folder).acquire()
            try:
                if self.resume_path is None and (self.folder / LATEST).exists():  # a twin finished meanwhile
                    raise OutputError(
                        f"run folder {self.folder} already holds a checkpoint: continue it with --resume "
                        f"{self.folder}, or pick another --run-name"
                    )
                remove_stale_temps(self.folder / LATEST)  # left by a run killed mid-save (kill -9)
                write_text(self.folder / "settings.json", self.settings.model_dump_json(indent=2) + "\n")
            except BaseException:
                self._cleanup(failed=True)
                raise
        self.stop.install()
        return self

    def _events(self):
        """The TensorBoard writer, made on the first thing to write (rank 0 only; None on other ranks).

        A run that fails before it logs anything leaves no empty events file. The first write also logs the
        run's hyperparameters (TensorBoard's HParams tab) with its loss as the metric.
        """
        if self.writer is None and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            step = int(self.resume_ckpt["step"]) if self.resume_ckpt else None
            # purge_step hides events an interrupted run logged after its last checkpoint.
            self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=step)
            experiment, start, end = hparams(hparam_values(self.kind, self.settings), {f"{self.kind}/loss": 0.0})
            for summary in (experiment, start, end):
                self.writer.file_writer.add_summary(summary)
        return self.writer

    def _cleanup(self, failed: bool) -> None:
        """Release the run folder; after a failure, remove a folder this run created and left without a checkpoint."""
        if self._lock is None:
            return
        if failed and self._created_folder and not (self.folder / LATEST).exists():
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)  # also drops the lock file
        self._lock.release()
        self._lock = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop.restore()
        if self.tuner is not None:
            self.tuner.restore()
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()
        self._cleanup(failed=exc_type is not None)
        if self.dist.enabled and torch_dist.is_initialized():
            if exc_type is None:
                torch_dist.barrier()
            torch_dist.destroy_process_group()

    # -- state ----------------------------------------------------------------------------------------
    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        ema: nn.Module | None = None,
    ) -> tuple[int, int]:
        """Load model/optimizer/scheduler (and EMA) state when resuming; return (step, data position)."""
        ckpt = self.resume_ckpt
        if ckpt is None:
            return 0, 0
        load_weights(model, ckpt["model"], self.resume_path)
        if ema is not None:
            load_weights(ema, ckpt["ema"], self.resume_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if "rng" in ckpt:
            torch.set_rng_state(ckpt["rng"])
        self.start_step = int(ckpt["step"])
        self.last_good = (self.resume_path, self.start_step)
        # Every rank consumes the same number of clips per step, so one position serves all ranks.
        return self.start_step, int(ckpt.get("data_position", 0))

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """DistributedDataParallel around ``model`` under torchrun; the model itself otherwise."""
        if not self.dist.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)

    def clip_pool(self, start_index: int, transform: Callable[[dict, int], dict] | None = None) -> ClipPool:
        """This rank's pool of training clips, as it was at stream position ``start_index``."""
        return ClipPool(self.settings, start_index, self.dist.rank, self.dist.world_size, self.print, transform)

    def seed_step(self, step: int) -> torch.Generator:
        """Re-seed the global RNG (all devices) and return a CPU generator, both from (seed, step, rank).

        Draws made on the CPU (frame and window choices, noise, timesteps) use the generator; random ops
        inside the networks (the VAE's posterior sample) use the re-seeded global RNG of their device.
        """
        seed = step_seed(self.settings.train.seed, step, self.dist.rank)
        torch.manual_seed(seed)
        return torch.Generator().manual_seed(seed)

    # -- one step ---------------------------------------------------------------------------------------
    def optimize(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loss_fn: Callable[[int], tuple[torch.Tensor, dict[str, torch.Tensor], int]],
        step: int,
    ) -> StepResult:
        """Gradient accumulation over ``train.grad_accum`` micro-batches, clip, NaN guard, optimizer step.

        ``loss_fn(micro)`` returns (loss, logs, samples) for one micro-batch; it runs under bf16 autocast
        where the device has native bf16 (``device.autocast``; so fetch data before calling this). A non-finite
        loss or gradient norm on any rank raises TrainingError before the weights are touched. On a CPU the
        thread count is re-chosen between steps (``threads.ThreadTuner``: each step is one unit).
        """
        with self.tuner.unit() if self.tuner is not None else contextlib.nullcontext():
            accum = self.settings.train.grad_accum
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            logs: dict[str, float] = {}
            samples = 0
            for micro in range(accum):
                sync = not self.dist.enabled or micro == accum - 1
                context = model.no_sync() if not sync else contextlib.nullcontext()
                with context:
                    with autocast(self.device, self.settings.train.amp):
                        loss, parts, n = loss_fn(micro)
                    (loss / accum).backward()
                total += float(loss.detach()) / accum
                for key, value in parts.items():
                    logs[key] = logs.get(key, 0.0) + float(value) / accum
                samples += n
            params = [p for p in model.parameters() if p.requires_grad]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.settings.train.grad_clip))
            bad_loss = not math.isfinite(total)
            stop_now, bad = any_rank([self.stop.signum is not None, bad_loss or not math.isfinite(grad_norm)],
                                     self.dist, self.device)
            if bad:
                optimizer.zero_grad(set_to_none=True)
                what = f"loss became {total}" if bad_loss else f"gradient norm became {grad_norm}"
                if self.last_good is not None:
                    kept = f"the last good checkpoint {self.last_good[0]} (step {self.last_good[1]}) is kept"
                else:
                    kept = "no checkpoint was written yet"
                raise TrainingError(
                    f"{what} at step {step + 1}: training stopped and {kept}; try a lower --lr or more warm-up"
                )
            optimizer.step()
            scheduler.step()
            self._stop_agreed = stop_now
            return StepResult(loss=total, logs=logs, grad_norm=grad_norm, samples=samples)

    @property
    def stop_requested(self) -> bool:
        """True when any rank received SIGINT/SIGTERM (agreed on by all ranks in the last step)."""
        return self._stop_agreed

    # -- logging ----------------------------------------------------------------------------------------
    def start_progress(self, step: int, max_steps: int) -> None:
        """Show the rich progress bar (rank 0 only)."""
        if not self.dist.is_main:
            return
        self.progress = make_train_progress(f"train {self.kind}")
        self.progress.start()
        self._task = self.progress.add_task(f"train {self.kind}", total=max_steps, completed=step, info="")
        self._meter.reset()

    def log_step(self, step: int, result: StepResult, lr: float, unit: str = "samples") -> None:
        """Progress bar every step; averaged TensorBoard scalars every ``train.log_every`` steps."""
        if not self.dist.is_main:
            return
        self.history.append(result.loss)
        values = {"loss": result.loss, **result.logs}
        self._meter.add({**values, "grad_norm": result.grad_norm}, result.samples * self.dist.world_size)
        elapsed = max(time.perf_counter() - self._meter.start, 1e-9)
        rate = self._meter.samples / elapsed
        if self.progress is not None:
            self.progress.update(
                self._task, completed=step, info=f"loss {result.loss:.4f} · {rate:.1f} {unit}/s"
            )
        if step % self.settings.train.log_every == 0:
            meter = self._meter
            writer = self._events()
            for key, total in meter.sums.items():
                tag = f"train/{key}" if key == "grad_norm" else f"{self.kind}/{key}"
                writer.add_scalar(tag, total / meter.steps, step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar(f"train/{unit}_per_s", rate, step)
            writer.add_scalar("train/steps_per_s", meter.steps / elapsed, step)
            writer.flush()
            meter.reset()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One TensorBoard scalar (rank 0 only)."""
        if self.dist.is_main:
            self._events().add_scalar(tag, value, step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """One TensorBoard image [3, H, W] in [0, 1] (rank 0 only)."""
        if self.dist.is_main:
            writer = self._events()
            writer.add_image(tag, image.detach().float().clamp(0, 1).cpu(), step)
            writer.flush()

    def print(self, message: str) -> None:
        """A line above the progress bar (rank 0 only)."""
        if self.dist.is_main:
            (self.progress.console if self.progress is not None else err_console).print(message, soft_wrap=True)

    # -- checkpoints --------------------------------------------------------------------------------------
    def save(self, step: int, make: Callable[[], dict[str, Any]]) -> Path:
        """Write ckpt_latest.pt (and ckpt_<step>.pt every ``train.keep_every``) on rank 0, atomically."""
        path = self.folder / LATEST
        if self.dist.is_main:
            ckpt = make()
            ckpt["rng"] = torch.get_rng_state()
            save_checkpoint(ckpt, path)
            keep = self.settings.train.keep_every
            if keep and step % keep == 0:
                save_checkpoint(ckpt, self.folder / f"ckpt_{step:08d}.pt")
        self.last_good = (path, step)
        return path

    def maybe_checkpoint(self, step: int, max_steps: int, make: Callable[[], dict[str, Any]]) -> None:
        """Checkpoint every ``train.checkpoint_every`` steps, at the end, and when a stop was requested.

        After a stop request the checkpoint is written and TrainingInterrupted is raised on every rank.
        """
        due = step % self.settings.train.checkpoint_every == 0 or step >= max_steps
        if due or self.stop_requested:
            self.save(step, make)
        if self.stop_requested:
            cause = self.stop.name or "a signal to another rank"
            self.print(
                f"[yellow]{cause}[/yellow]: stopped at step {step}, saved {self.folder / LATEST} "
                f"(continue with --resume {self.folder})"
            )
            raise TrainingInterrupted

    def summary(self, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The summary table the CLI prints (empty on ranks other than 0): run folder, steps, first/last loss.

        The first and last losses average ``train.log_every`` steps each, fewer on a short run so that the
        two never share a step; a run of one step shows its one loss.
        """
        if not self.dist.is_main:
            return {}
        out: dict[str, Any] = {"run folder": str(self.folder), "steps": step}
        n, done = len(self.history), self.start_step  # steps of this process, steps before it (resumed)

        def steps(a: int, b: int) -> str:  # the 1-based steps a..b of the run
            return f"loss (step {a})" if a == b else f"loss (steps {a}-{b})"

        if n == 1:
            out[steps(done + 1, done + 1)] = self.history[0]
        elif n > 1:
            window = max(1, min(self.settings.train.log_every, n // 2))
            out[steps(done + 1, done + window)] = sum(self.history[:window]) / window
            out[steps(done + n - window + 1, done + n)] = sum(self.history[-window:]) / window
        out["checkpoint"] = str(self.folder / LATEST)
        threads = f", {self.tuner.describe('steps')}" if self.tuner else ""
        out["device"] = f"{self.device}, {precision(self.device, self.settings.train.amp)}{threads}"
        out.update(extra or {})
        return out


def image_row(frames: torch.Tensor) -> torch.Tensor:
    """Frames [N, 3, H, W] side by side -> [3, H, N*W]."""
    return torch.cat(list(frames), dim=-1)

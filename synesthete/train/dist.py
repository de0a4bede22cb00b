"""Distributed runs and signals: this process's place in a torchrun job, decisions every rank takes together,
and Ctrl-C/SIGTERM turned into a flag the training loop checks between steps."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from synesthete.device import resolve_device
from synesthete.errors import DeviceError
from synesthete.settings import Settings


@dataclass
class Dist:
    """This process's place in a (possibly single-process) torchrun job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, shows progress and writes checkpoints."""
        return self.rank == 0


def setup_distributed(settings: Settings) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, nccl on CUDA); pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(settings.device)
    if world_size <= 1:
        return Dist(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "mps":
        raise DeviceError("torchrun with several processes is not supported on MPS: use --device cpu")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, enabled=True), device


def any_rank(flags: list[bool], dist: Dist, device: torch.device) -> list[bool]:
    """Each flag OR-ed over all ranks, so every rank takes the same decision (stop, NaN) at the same step."""
    if not dist.enabled:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (only possible on the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give the signals back to their previous handlers."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user really wants out, checkpoint or not
        self.signum = signum

    @property
    def name(self) -> str:
        """SIGINT / SIGTERM."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

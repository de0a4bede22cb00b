"""Contact sheets: PNGs of frames spread over videos, a render's row above its ground truth's."""

from __future__ import annotations

from pathlib import Path

import torch

from synesthete.media import to_unit
from synesthete.metrics.picture import sheet_times, write_sheet
from synesthete.settings import Settings


def pair_rows(video: torch.Tensor, truth: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Two sheet rows: ``count`` frames of ``video`` spread over it, and ``truth``'s frames at the same times."""
    idx = sheet_times(min(len(video), len(truth)), count)
    return [to_unit(video[idx]), to_unit(truth[idx])]


def heldout_sheet_rows(videos: dict[str, list[torch.Tensor]], settings: Settings) -> list[torch.Tensor]:
    """Per held-out clip a row of model frames, then a row of oracle frames at the same times."""
    rows = []
    for model, oracle in zip(videos["model"], videos["oracle"], strict=True):
        rows += pair_rows(model, oracle, settings.eval.sheet_frames)
    return rows


def write_heldout_sheet(path: Path, videos: dict[str, list[torch.Tensor]], settings: Settings) -> None:
    """Contact sheet PNG of ``heldout_sheet_rows``."""
    write_sheet(path, heldout_sheet_rows(videos, settings), group=2)


def write_video_sheet(path: Path, frames: torch.Tensor, settings: Settings, rows: int = 4) -> None:
    """Contact sheet of one video: ``rows`` rows of ``eval.sheet_frames`` frames spread over the video."""
    n = settings.eval.sheet_frames
    idx = sheet_times(frames.shape[0], n * rows)
    picked = to_unit(frames[idx])
    write_sheet(path, [picked[r * n : (r + 1) * n] for r in range(rows)], group=rows)


def family_sheet_path(path: Path, family: str) -> Path:
    """Where the contact sheet of ``family`` goes beside ``path``: ``<stem>-<family>.png``."""
    return path.with_name(f"{path.stem}-{family}{path.suffix}")


def write_family_sheets(path: Path, sheets: dict[str, list[torch.Tensor]]) -> list[Path]:
    """One contact sheet PNG per family beside ``path`` (``family_sheet_path``), render above visualizers."""
    written = []
    for family, rows in sheets.items():
        target = family_sheet_path(path, family)
        write_sheet(target, rows, group=2)
        written.append(target)
    return written

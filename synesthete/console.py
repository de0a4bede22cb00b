"""Shared rich console and progress bars for long work, and the --quiet switch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

_quiet = {"on": False}

# Widths the train progress line's columns take besides the bar and the description: spinner, M/N of up to
# 6-digit step counts, time remaining, "loss 0.1234 · 1234.5 samples/s", and the spaces between columns.
_TRAIN_FIXED = 1 + 13 + 7 + 31 + 6


def set_quiet(value: bool) -> None:
    """``--quiet``: no progress bars and no summary tables (errors, warnings and asked-for output still print)."""
    _quiet["on"] = bool(value)


def is_quiet() -> bool:
    """True under ``--quiet``."""
    return _quiet["on"]


def make_progress(disable: bool = False) -> Progress:
    """A progress bar with count, ETA and a free-text field ``{task.fields[info]}`` for loss, fps etc."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err_console,
        disable=disable or is_quiet(),
        transient=False,
    )


def make_train_progress(description: str, disable: bool = False) -> Progress:
    """The training progress line, sized to the terminal so that it is never cut (80 columns included).

    Wide terminals get the elapsed time too; the bar takes what is left, between 8 and 40 columns.
    """
    width = err_console.width
    wide = width >= _TRAIN_FIXED + len(description) + 40 + 16
    bar = max(8, min(40, width - _TRAIN_FIXED - len(description) - (16 if wide else 0) - 1))
    columns: list[ProgressColumn | str] = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=bar),
        MofNCompleteColumn(),
    ]
    if wide:
        columns += [TimeElapsedColumn(), TextColumn("ETA")]
    columns += [TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    return Progress(*columns, console=err_console, disable=disable or is_quiet(), transient=False)

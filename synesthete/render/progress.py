"""The render's progress line: elapsed time, frames/s of generation, RTF and ETA, from the start of the render."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn

from synesthete.console import make_progress


def clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def progress_bar(disable: bool) -> Progress:
    """The render's progress line: its figures are computed here, from the start of the render."""
    bar = make_progress(disable=disable)  # the shared console and the --quiet switch
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), console=bar.console, disable=bar.disable, transient=False,
    )


class Pace:
    """Progress figures from the start of the render: elapsed time, frames/s of generation, and the ETA.

    The rate is measured over all frames generated so far, from the moment generation began (reading the
    audio and loading the models come before it and are counted in the elapsed time, not in the rate).
    """

    def __init__(self, t_start: float, total: int, seconds: float) -> None:
        self.t_start, self.total, self.seconds = t_start, total, seconds
        self.t_gen: float | None = None

    def begin(self) -> None:
        self.t_gen = time.perf_counter()

    def line(self, done: int) -> str:
        now = time.perf_counter()
        elapsed = now - self.t_start
        gen = now - (self.t_gen or now)
        if done <= 0 or gen <= 0:
            return f"{clock(elapsed)} elapsed"
        rate = done / gen
        eta = (self.total - done) / rate
        rtf = elapsed / (done / self.total * self.seconds)
        return f"{rate:.1f} frames/s · RTF {rtf:.2f} · {clock(elapsed)} · ETA {clock(eta)}"


class RenderProgress:
    """The progress line of one render, fed as frames are generated (``generated``) and written (``written``)."""

    def __init__(self, bar: Progress, task: TaskID, pace: Pace) -> None:
        self.bar, self.task, self.pace = bar, task, pace
        self.made = 0  # frames the network has made, in all lanes

    def start(self, label: str) -> None:
        """Generation begins: the line takes the render's ``label`` and starts its rate from now."""
        self.bar.update(self.task, description=label, completed=0, info=self.pace.line(0))
        self.pace.begin()

    def generated(self, n: int) -> None:
        self.made = n
        self.bar.update(self.task, completed=n, info=self.pace.line(n))

    def written(self, done: int) -> None:
        """``done`` frames are written: after the last batched sample, the later lanes are still being decoded."""
        total = self.pace.total
        if self.made >= total and done < total:
            elapsed = clock(time.perf_counter() - self.pace.t_start)
            self.bar.update(self.task, info=f"writing the later lanes: {done}/{self.made} frames · {elapsed} elapsed")

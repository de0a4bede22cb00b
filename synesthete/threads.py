"""CPU threads for a machine that is shared: how many, and how OpenMP workers wait.

Two facts about the project's 2-core CPU drive this module (docs/rendering.md#threads-on-a-shared-cpu; the
figures are in docs/experiments/2026-11-29-render-speed.md):

- With the default OpenMP wait policy, a worker that reaches a barrier first *spins* for a while (GNU
  OpenMP: ``GOMP_SPINCOUNT=300000``, about 3 ms). When another process holds the other core, the partner it
  waits for is descheduled and every small parallel op stalls: a render beside other torch processes runs
  many times slower. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) avoids that, but then every op of a
  small network pays a futex wake-up, and two threads ran a DiT forward slower than one. A short spin,
  ``GOMP_SPINCOUNT=3000`` (tens of microseconds), covers the gap between the ops of one forward and still
  sleeps soon when the partner is descheduled: two threads are then faster than one again. It must be in
  the environment before torch loads its OpenMP runtime, so the entry points call ``prepare_openmp`` before
  they import torch: the CLI at its start (``synesthete.cli``), and
  the Python API when ``synesthete.Synesthete`` (or another name of ``synesthete.__all__``) is first
  looked up (``synesthete.__getattr__``). Importing a module (``synesthete.render``, ``synesthete.pipeline``)
  has no such side effect: a script that imports them directly, or imports torch first, keeps OpenMP's
  default (benchmarks call ``prepare_openmp`` themselves).
- The right thread count depends on what else runs, which changes while a long render runs.
  ``ThreadTuner`` starts from the cores nobody else is using (affinity, cgroup quota, load average) and
  re-measures as it goes: every ``explore_every`` windows it times one window at the other thread count
  and keeps whichever was faster.

An explicit ``OMP_NUM_THREADS`` (or ``OMP_WAIT_POLICY``) always wins: the tuner then leaves the count alone,
which also keeps renders bitwise reproducible (matrix products can round differently with another number
of threads).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator

SHORT_SPIN = "3000"  # GOMP_SPINCOUNT: GNU OpenMP's default is 300000 (about 3 ms of spinning)


def prepare_openmp() -> bool:
    """Set a short OpenMP spin (``GOMP_SPINCOUNT=SHORT_SPIN``) unless the user chose how OpenMP waits
    (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``); True if it is set now and can still take effect.

    OpenMP reads the variable once, when its runtime loads (with torch), so this is a no-op afterwards.
    ``GOMP_SPINCOUNT=300000`` restores GNU OpenMP's own default, ``OMP_WAIT_POLICY=PASSIVE`` sleeps at once.
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return True


def _cgroup_cores() -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 ``cfs_quota_us``), in cores, or None."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def busy_cores() -> float:
    """Cores other work keeps busy: the 1-minute load average (0 where the system does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def explicit_threads() -> int | None:
    """The thread count the user fixed with ``OMP_NUM_THREADS``, or None."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        return max(1, int(value)) if value else None
    except ValueError:
        return None


def initial_threads() -> int:
    """Threads to start with: the user's ``OMP_NUM_THREADS``, or the usable cores nobody else is using."""
    fixed = explicit_threads()
    if fixed is not None:
        return fixed
    cores = usable_cores()
    return max(1, min(cores, cores - int(busy_cores() + 0.5)))


class ThreadTuner:
    """Choose torch's intra-op thread count unit of work by unit of work (render windows), by measuring.

    Call ``before()`` and ``after()`` around each unit (units must cost about the same: render windows
    do). The tuner keeps a running mean of the seconds per unit at the thread count it runs, and from time
    to time runs one unit at the other candidate count (1 or all usable cores): if that was faster it stays
    there, otherwise it goes back and waits twice as long before trying again (``explore_every`` units at
    first, at most ``max_explore_every``). So it notices when another job starts or stops, and costs little
    when nothing changes. The very first unit is not timed (it pays for first-call set-up). With
    ``OMP_NUM_THREADS`` set it only reports that count.
    """

    def __init__(self, explore_every: int = 16, max_explore_every: int = 128, smoothing: float = 0.3) -> None:
        import torch

        self._torch = torch
        self.fixed = explicit_threads()
        cores = usable_cores()
        if self.fixed is not None:
            self.candidates = [self.fixed]
            self.current = self.fixed
        else:
            self.candidates = sorted({1, cores})
            start = initial_threads()
            self.current = min(self.candidates, key=lambda n: (abs(n - start), -n))
        self.explore_every = self._interval = explore_every
        self.max_explore_every = max_explore_every
        self.smoothing = smoothing
        self.mean: dict[int, float] = {}
        self.units = {n: 0 for n in self.candidates}
        self.switches = 0
        self._since_explore = 0
        self._first = True
        self._exploring_from: int | None = None
        self._t0 = 0.0
        self._previous = torch.get_num_threads()
        torch.set_num_threads(self.current)

    def restore(self) -> None:
        """Give torch back the thread count it had before this tuner (the tuner sets it process-wide)."""
        self._torch.set_num_threads(self._previous)

    def _set(self, n: int) -> None:
        if n != self.current:
            self.current = n
            self.switches += 1
            self._torch.set_num_threads(n)

    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        """Time the enclosed block as one unit (``before`` then ``after``, even if it raises)."""
        self.before()
        try:
            yield
        finally:
            self.after()

    def before(self) -> None:
        """Start timing a unit."""
        self._t0 = time.perf_counter()

    def after(self) -> None:
        """Stop timing a unit and pick the thread count for the next one."""
        seconds = time.perf_counter() - self._t0
        n = self.current
        self.units[n] += 1
        if len(self.candidates) < 2:
            return
        if self._first:
            self._first = False
            return
        back = self._exploring_from
        if back is not None:  # one unit at another count: a fresh figure for it, compared with the mean
            self._exploring_from = None
            self.mean[n] = seconds
            if seconds < self.mean.get(back, math.inf):
                self._interval = self.explore_every  # it won: stay, and keep checking often
            else:
                self._interval = min(2 * self._interval, self.max_explore_every)
                self._set(back)
            return
        old = self.mean.get(n)
        self.mean[n] = seconds if old is None else (1 - self.smoothing) * old + self.smoothing * seconds
        self._since_explore += 1
        worse = any(self.mean.get(c, math.inf) < self.mean[n] for c in self.candidates if c != n)
        if worse or self._since_explore >= self._interval or len(self.mean) < len(self.candidates):
            self._since_explore = 0
            others = [c for c in self.candidates if c != n]
            self._exploring_from = n
            self._set(min(others, key=lambda c: self.mean.get(c, -1.0)))  # an untried count first

    def describe(self, unit: str = "windows") -> str:
        """A short note for a summary, e.g. 'threads tuned (1 for 40, 2 for 210 windows)'."""
        policy = os.environ.get("OMP_WAIT_POLICY", "").lower() or (
            f"spin {os.environ['GOMP_SPINCOUNT']}" if "GOMP_SPINCOUNT" in os.environ else "default")
        if self.fixed is not None:
            return f"{self.fixed} thread{'s' if self.fixed != 1 else ''} (OMP_NUM_THREADS), OpenMP wait {policy}"
        used = ", ".join(f"{n} for {k}" for n, k in sorted(self.units.items()) if k)
        return f"threads tuned ({used} {unit}), OpenMP wait {policy}"

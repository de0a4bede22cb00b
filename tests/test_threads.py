"""CPU threads on a shared machine: the OpenMP wait policy set before torch loads, and the thread tuner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from synesthete import threads

PROBE = (
    "import os, sys\n"
    "{pre}"
    "from synesthete import threads\n"
    "print(threads.prepare_openmp(), os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))\n"
)


def _probe(pre: str = "", **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], env={**base, **env}, capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def test_prepare_openmp_sets_a_short_spin_before_torch_loads():
    assert _probe() == ["True", threads.SHORT_SPIN, "None"]


def test_prepare_openmp_leaves_the_users_choice_alone():
    assert _probe(OMP_WAIT_POLICY="PASSIVE") == ["False", "None", "PASSIVE"]
    assert _probe(GOMP_SPINCOUNT="300000") == ["False", "300000", "None"]


@pytest.mark.slow
def test_prepare_openmp_is_a_no_op_once_torch_is_loaded():
    assert _probe(pre="import torch\n") == ["False", "None", "None"]


@pytest.mark.slow
@pytest.mark.parametrize(("statement", "spin"), [
    ("import synesthete.render", None),  # importing a module leaves the environment alone
    ("from synesthete import Synesthete", threads.SHORT_SPIN),  # the Python API's entry point prepares OpenMP
])
def test_openmp_is_prepared_by_the_entry_point_not_at_import(statement, spin):
    """Each in a fresh process (with torch loaded, it is too late): the spin is set before torch loads or never."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = f"import os, sys\n{statement}\nprint('torch' in sys.modules, os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", str(spin)]


class FakeClock:
    """perf_counter for the tuner: each unit takes the seconds ``cost[threads]``."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.cost, self.now = cost, 0.0

    def __call__(self) -> float:
        return self.now

    def run(self, tuner: threads.ThreadTuner, units: int) -> None:
        for _ in range(units):
            tuner.before()
            self.now += self.cost[tuner.current]
            tuner.after()


@pytest.mark.parametrize(("cost", "best"), [({1: 1.0, 2: 0.6}, 2), ({1: 0.6, 2: 1.0}, 1)])
def test_tuner_settles_on_the_faster_count_and_restores(monkeypatch, cost, best):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    clock = FakeClock(cost)
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    before = torch.get_num_threads()
    tuner = threads.ThreadTuner(explore_every=4, max_explore_every=16)
    try:
        clock.run(tuner, 60)
        assert tuner.current == best
        assert torch.get_num_threads() == best
        assert tuner.units[best] > tuner.units[3 - best]  # it explored the other count, then kept the winner
        assert tuner.units[3 - best] >= 1
    finally:
        tuner.restore()
    assert torch.get_num_threads() == before


def test_tuner_follows_a_change_of_load(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    clock = FakeClock({1: 1.0, 2: 0.6})
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    tuner = threads.ThreadTuner(explore_every=4, max_explore_every=16)
    try:
        clock.run(tuner, 40)
        assert tuner.current == 2
        clock.cost = {1: 1.0, 2: 3.0}  # another job takes a core: two threads now wait for each other
        clock.run(tuner, 40)
        assert tuner.current == 1
    finally:
        tuner.restore()


def test_explicit_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    clock = FakeClock({1: 1.0, 2: 0.1})
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    tuner = threads.ThreadTuner(explore_every=2)
    try:
        clock.run(tuner, 20)
        assert tuner.current == 1
        assert tuner.units == {1: 20}
        assert "(OMP_NUM_THREADS)" in tuner.describe()
    finally:
        tuner.restore()


def test_usable_cores_is_positive_and_at_most_the_cpu_count():
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.slow
def test_training_tunes_its_threads_and_gives_them_back(tmp_path, monkeypatch):
    from synesthete.settings import load_settings
    from synesthete.train.vae import train_vae

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    settings = load_settings("tiny", device="cpu", vae={"max_steps": 5}, train={"preview_samples": 1})
    summary = train_vae(settings)
    assert summary["steps"] == 5
    assert "threads tuned (" in summary["device"] and " steps)" in summary["device"]
    assert summary["device"].startswith("cpu, ")
    assert torch.get_num_threads() == before

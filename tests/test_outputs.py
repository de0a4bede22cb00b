"""Where jobs write: never onto their own input, names that fit, folders that cannot be written (checked before
any work), full and read-only disks; one line each, and no temporary file, lock or run folder left behind.

Full and read-only disks are real: a small tmpfs mounted in a private mount namespace (``unshare``) for one CLI
process; where that is not allowed, those tests skip. Unwritable folders are under /proc.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, assert_user_error, call_cli, cli_env, render, run_cli, temps, tone

from synesthete.media import load_video, write_video, write_wav

needs_proc = pytest.mark.skipif(not Path("/proc/self").exists(), reason="uses /proc: a folder that refuses new files")


# --------------------------------------------------------------------------------------------- never onto an input
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_render_refuses_to_overwrite_its_input(ckpt_dir, tmp_path, how):
    src = tmp_path / "song.mp4"
    write_video(src, torch.zeros(8, 3, 32, 32), 30, audio=tone(0.3).unsqueeze(0), sample_rate=16000)
    before = src.read_bytes()
    out = src
    if how == "symlink":
        out = tmp_path / "link.mp4"
        out.symlink_to(src)
    elif how == "hardlink":
        out = tmp_path / "hard.mp4"
        os.link(src, out)
    proc = render(ckpt_dir, str(src), "-o", str(out), "--overwrite")
    assert_user_error(proc, "is the input", "refusing")
    assert src.read_bytes() == before
    assert temps(tmp_path) == [] and not list(tmp_path.glob(".*.lock"))


def test_eval_refuses_json_or_plot_onto_its_inputs(tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, torch.zeros(8, 3, 32, 32), 30, audio=tone(0.3).unsqueeze(0), sample_rate=16000)
    before = video.read_bytes()
    link = tmp_path / "v.json"
    link.symlink_to(video)
    assert_user_error(call_cli("eval", "--video", str(video), "-o", str(link), "--overwrite"), "is the input")
    assert_user_error(call_cli("eval", "--video", str(video), "--plot", str(video), "--overwrite"), "is the input")
    assert video.read_bytes() == before


# --------------------------------------------------------------------------------------------- names and folders
def test_long_output_name_fits(ckpt_dir, song, tmp_path):
    out = tmp_path / ("n" * 245 + ".mp4")  # 249 characters: the temporary name must fit too
    proc = render(ckpt_dir, str(song), "-o", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert load_video(out)[0].shape[0] == 30


@needs_proc
@pytest.mark.slow
def test_unwritable_output_is_checked_before_loading_models(song, tmp_path):
    # An empty --checkpoint-dir would fail at model loading: the output error must come first.
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("render", str(song), "-o", "/proc/x.mp4", "--checkpoint-dir", str(empty))
    assert_user_error(proc, "cannot write to /proc")


@needs_proc
def test_unwritable_runs_and_export_folders_fail_before_training(tmp_path):
    runs = {"SYNESTHETE_PATHS__RUNS": "/proc/synesthete-runs"}
    proc = call_cli("train", "vae", "--preset", "tiny", "--max-steps", "1", env=runs)
    assert_user_error(proc, "cannot write to /proc")
    env = {"SYNESTHETE_PATHS__RUNS": str(tmp_path / "runs")}
    proc = call_cli("train", "vae", "--preset", "tiny", "--max-steps", "1", "--export", "/proc/export", env=env)
    assert_user_error(proc, "cannot write to /proc")
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = call_cli("train", "vae", "--preset", "tiny", "--max-steps", "1", "--export", str(blocker), env=env)
    assert_user_error(proc, "not a folder")


@needs_proc
def test_eval_json_location_is_checked_before_scoring(tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, torch.zeros(30, 3, 32, 32), 30, audio=tone(1.0).unsqueeze(0), sample_rate=16000)
    proc = call_cli("eval", "--video", str(video), "-o", "/proc/r.json")
    assert_user_error(proc, "cannot write to /proc")
    assert "AV-Align" not in proc.stdout  # nothing was scored


# --------------------------------------------------------------------------------------------- full disks
def _namespace() -> list[str] | None:
    """A command prefix that runs in a private mount namespace where tmpfs can be mounted, or None."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            proc = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"], capture_output=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return prefix
    return None


NAMESPACE = _namespace() if sys.platform.startswith("linux") else None


needs_tmpfs = pytest.mark.skipif(NAMESPACE is None, reason="cannot mount a tmpfs in a private mount namespace")


def cli_on_tmpfs(mount: Path, options: str, *args: str, env: dict[str, str] | None = None, before: str = "",
                 after: str = "") -> subprocess.CompletedProcess:
    """Run ``python -m synesthete ARGS`` with a tmpfs (``mount -o options``) at ``mount``, private to that process
    and gone with it: shell ``before`` runs first, ``after`` (to look at the tmpfs) prints after a line "@@"."""
    mount.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs -o {options} none {shlex.quote(str(mount))} || exit 99\n{before}\n"
              f'"$@"; rc=$?\necho @@\n{after}\nexit $rc')
    return subprocess.run([*NAMESPACE, "sh", "-c", script, "sh", sys.executable, "-m", "synesthete", *args],
                          capture_output=True, text=True, env=cli_env(env), cwd=str(ROOT), timeout=600)


def one_error_line(proc, *fragments: str) -> None:
    """``assert_user_error`` with stdout split at the "@@" that ``cli_on_tmpfs`` prints after the command."""
    stdout = proc.stdout.split("@@")[0]
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, proc.stderr)
    assert_user_error(result, *fragments)


@needs_tmpfs
@pytest.mark.slow
@pytest.mark.parametrize(("when", "file"), [("at the first checkpoint", "ckpt_latest.pt"),
                                            ("from the start", "settings.json")])
def test_training_onto_a_full_disk_is_one_line(tmp_path, when, file):
    """5. `train` onto a full disk gave two tracebacks (Errno 28, then torch's zip writer); now one line, as
    render gives, and no run folder or temporary file is left. A disk full from the start failed on the pid
    in the run folder's lock file, then on settings.json."""
    full = tmp_path / "full"
    fill = f"mkdir {full}/runs; dd if=/dev/zero of={full}/fill bs=4k 2>/dev/null" if when == "from the start" else ""
    proc = cli_on_tmpfs(full, "size=150k", "train", "vae", "--preset", "tiny", "--max-steps", "2",
                        env={"SYNESTHETE_PATHS__RUNS": str(full / "runs")}, before=fill,
                        after=f"ls -A {full}/runs 2>/dev/null")
    one_error_line(proc, file, "no space left on device")
    assert proc.stdout.split("@@")[1].split() == []  # the run folder it made is gone, with no temporary file


@needs_tmpfs
@pytest.mark.slow
def test_rendering_onto_a_full_disk_is_one_line_and_keeps_the_old_file(ckpt_dir, tmp_path):
    """5, 9. A full disk showed torchcodec's C++ source path (or a traceback) before "No space left on device"."""
    song = tmp_path / "s.wav"
    write_wav(song, tone(6.0), 16000)  # about 100 kB of video and AAC
    full = tmp_path / "full"
    proc = cli_on_tmpfs(full, "size=40k", "render", str(song), "-o", str(full / "x.mp4"), "--overwrite", *TINY,
                        "--checkpoint-dir", str(ckpt_dir), before=f"printf keep > {full}/x.mp4",
                        after=f"ls -A {full}; cat {full}/x.mp4 2>/dev/null")
    one_error_line(proc, "x.mp4", "no space left on device")
    assert ".cpp" not in proc.stderr and "__w" not in proc.stderr
    assert proc.stdout.split("@@")[1].split() == ["x.mp4", "keep"]  # the old file, and no temporary file


@needs_tmpfs
@pytest.mark.slow
def test_read_only_file_system_is_named_in_a_batch(song, tmp_path):
    """Cosmetic: a read-only file system was reported as "permission denied"."""
    ro = tmp_path / "ro"
    proc = cli_on_tmpfs(ro, "ro,size=64k", "render", str(song), str(song), "-o", str(ro / "videos"))
    one_error_line(proc, "cannot write to", "read-only file system")
    assert "permission denied" not in proc.stderr.lower()

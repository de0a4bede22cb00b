"""Real music in the data engine (data.music_dirs, --music) and the per-family eval (eval --families/--music)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import ROOT, assert_user_error, call_cli, tiny_checkpoints

from synesthete.audio.features import level_gain
from synesthete.data import ClipStream, make_clip, make_music_clip, music_library, seed_for
from synesthete.errors import InputError
from synesthete.eval import visualizers
from synesthete.media import write_wav
from synesthete.music import GAIN_DB, LEVEL_JITTER_DB, SPEED, TILT, MusicLibrary, excerpt, file_digest
from synesthete.styles import families

RATE = 16000
TONES = {f"tone{hz}.wav": hz for hz in (200, 300, 450, 675, 1000, 1500)}


def _tone(hz: float, seconds: float) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE)) / RATE
    return 0.3 * torch.sin(2 * math.pi * hz * t) * (1 + 0.5 * torch.sin(2 * math.pi * 2 * t))  # pulses at 2 Hz


def _dominant_hz(wave: torch.Tensor) -> float:
    spec = torch.fft.rfft(wave.double()).abs()
    return float(torch.fft.rfftfreq(wave.numel(), 1 / RATE)[spec.argmax()])


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """A music folder: six pure tones of 4 s in a subfolder, a text file and a hidden wav (both ignored)."""
    root = tmp_path_factory.mktemp("music")
    (root / "album").mkdir()
    for name, hz in TONES.items():
        write_wav(root / "album" / name, _tone(hz, 4.0), RATE)
    (root / "notes.txt").write_text("not audio")
    write_wav(root / ".hidden.wav", _tone(3000, 4.0), RATE)
    return root


def _settings(tiny, folder, **data):
    return tiny.updated(audio={"sample_rate": RATE}, data={"music_dirs": [folder], "music_share": 1.0,
                                                          "music_heldout": 0.5, **data})


def _middle_share(folder) -> float:
    """A held-out share that splits the folder's songs in two halves (the split follows the files' hashes)."""
    keys = sorted(int(file_digest(p)[:12], 16) / 16**12 for p in folder.rglob("tone*.wav"))
    return (keys[2] + keys[3]) / 2


def test_library_splits_by_content_and_the_stream_draws_only_training_songs(tiny, songs, tmp_path):
    share = _middle_share(songs)
    settings = _settings(tiny, songs, music_heldout=share)
    library = music_library(settings)
    train = {s.path.name for s in library.songs("train")}
    heldout = {s.path.name for s in library.songs("heldout")}
    assert train | heldout == set(TONES) and not train & heldout
    assert len(train) == len(heldout) == 3

    clips = []
    for clip in ClipStream(settings, batch_size=1):
        clips.append(clip)
        if len(clips) == 8:
            break
    for clip in clips:
        how = clip["meta"]["music"]
        assert how["file"] in train
        # The excerpt is that file's tone, moved by the speed change (tempo and pitch together).
        assert _dominant_hz(clip["audio"]) == pytest.approx(TONES[how["file"]] * how["speed"], rel=0.02)
        # Ground truth: the visualizers' drawing of this very audio in the clip's look.
        drawn = visualizers(clip["audio"], clip["meta"]["visual"], settings, clip["frames"].shape[0])
        assert torch.equal(drawn, clip["frames"])
    assert len({c["meta"]["music"]["file"] for c in clips}) > 1

    # The split follows the bytes, not the name: a held-out song copied under another name stays held out.
    other = tmp_path / "renamed"
    other.mkdir()
    name = sorted(heldout)[0]
    shutil.copy(songs / "album" / name, other / "zzz.wav")
    copy = MusicLibrary.scan([other], share, min_seconds=1.0)
    assert [s.path.name for s in copy.songs("heldout")] == ["zzz.wav"]


def test_stream_without_music_is_the_procedural_stream(tiny):
    stream = iter(ClipStream(tiny, batch_size=1))
    for i in range(3):
        clip, expected = next(stream), make_clip(seed_for(i, tiny), tiny)
        assert "music" not in clip["meta"]
        assert torch.equal(clip["audio"], expected["audio"]) and torch.equal(clip["frames"], expected["frames"])


def test_music_share_mixes_procedural_and_real_clips(tiny, songs):
    settings = _settings(tiny, songs, music_share=0.5, music_heldout=_middle_share(songs))
    stream = iter(ClipStream(settings, batch_size=1))
    real = sum("music" in next(stream)["meta"] for _ in range(40))
    assert 10 <= real <= 30


def test_excerpt_gain_and_tilt_keep_the_peak_in_range(songs):
    library = MusicLibrary.scan([songs], 0.0, min_seconds=1.0)
    for seed in range(12):
        wave, how = excerpt(library.pick(seed, "train"), seed, 1.0, RATE)
        assert wave.shape == (RATE,) and float(wave.abs().max()) <= 0.99 + 1e-6
        assert GAIN_DB[0] <= how["gain_db"] <= GAIN_DB[1] and abs(how["tilt"]) <= TILT
        assert abs(how["speed"] - 1) <= SPEED


def test_loud_excerpts_are_turned_down_to_the_level_render_feeds_the_brain(tiny, songs):
    """A real excerpt louder than render.level comes turned down to it (+- LEVEL_JITTER_DB), as render turns a
    song down before the Brain hears it; its frames are drawn from the turned-down audio; level 0 keeps it."""
    level = 0.3  # the tones' loud frames sit at 0.45-1.27 after the excerpt's own gain: all louder
    settings = _settings(tiny, songs, music_heldout=0.0).updated(render={"level": level})
    library = music_library(settings)
    low, high = level * 10 ** (-LEVEL_JITTER_DB / 20), level * 10 ** (LEVEL_JITTER_DB / 20)
    gains = []
    for seed in range(6):
        song = library.pick(seed, "train")
        wave, _ = excerpt(song, seed, settings.audio.clip_seconds, RATE)
        clip = make_music_clip(song, seed, settings)
        gain_db = clip["meta"]["music"]["level_db"]
        assert gain_db < 0
        assert torch.allclose(clip["audio"], wave * 10 ** (gain_db / 20), rtol=2e-3, atol=1e-6)  # turned down only
        # Its loud frames now sit within the jitter of the level (level_gain 1 at the top of the range).
        assert level_gain(clip["features"], settings, target=high * 1.01) == 1.0
        assert level_gain(clip["features"], settings, target=low * 0.99) < 1.0
        gains.append(gain_db)
        drawn = visualizers(clip["audio"], clip["meta"]["visual"], settings, clip["frames"].shape[0])
        assert torch.equal(drawn, clip["frames"])
    assert len(set(gains)) == len(gains)  # each clip its own gain: the target is drawn per clip
    off = settings.updated(render={"level": 0})
    clip = make_music_clip(library.pick(0, "train"), 0, off, with_frames=False)
    assert clip["meta"]["music"]["level_db"] == 0.0


def test_music_option_refuses_bad_folders_with_one_line(tmp_path):
    empty, text_only, junk = tmp_path / "empty", tmp_path / "text", tmp_path / "junk"
    for folder in (empty, text_only, junk):
        folder.mkdir()
    (text_only / "readme.md").write_text("# no songs")
    (junk / "song.ogg").write_bytes(b"OggS" + bytes(4000))
    cases = [(tmp_path / "missing", "does not exist"), (empty, "holds no audio files"),
             (text_only, "holds no audio files"), (junk, "none of its 1 audio files could be used")]
    for folder, message in cases:
        proc = call_cli("train", "diffusion", "--preset", "tiny", "--music", str(folder), "--max-steps", "1",
                        "--run-name", "x", env={"SYNESTHETE_PATHS__RUNS": str(tmp_path / "runs")})
        assert_user_error(proc, message)
    assert not (tmp_path / "runs" / "x" / "ckpt_latest.pt").exists()
    with pytest.raises(InputError, match="does not exist"):
        MusicLibrary.scan([tmp_path / "missing"], 0.2, min_seconds=1.0)


@pytest.mark.slow
def test_family_eval_on_two_generated_songs(tiny, tmp_path):
    """`eval --music` end to end with tiny networks: a row per family, real and procedural, and a sheet each."""
    from synesthete.audio.synth import synthesize

    folder = tmp_path / "songs"
    folder.mkdir()
    for seed in (1, 2):
        wave, _ = synthesize(seed, tiny, duration=4.0, drums=True)
        write_wav(folder / f"song{seed}.wav", wave, tiny.audio.sample_rate)
    ckpt = tiny_checkpoints(tmp_path / "ckpt")
    out, sheet = tmp_path / "families.json", tmp_path / "sheet.png"
    proc = call_cli("eval", "--preset", "tiny", "--checkpoint-dir", str(ckpt), "--critic",
                    str(ROOT / "checkpoints" / "critic.pt"), "--music", str(folder), "-o", str(out),
                    "--sheet", str(sheet), "--long-seconds", "1",
                    env={"SYNESTHETE_DATA__MUSIC_HELDOUT": "0.99", "SYNESTHETE_EVAL__FAMILY_CLIPS": "1"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert list(result["families"]) == families() and result["sources"] == ["real", "procedural"]
    for entry in result["families"].values():
        for source in ("real", "procedural"):
            assert 0 <= entry[source]["model"]["on_style"] <= 1 and 0 <= entry[source]["visualizers"]["on_style"] <= 1
            assert entry[source]["fsd"] >= 0
        assert entry["real"]["excerpts"][0].startswith("song")
        for who in ("model", "visualizers"):
            assert 0 <= entry["long"][who]["style_stability"] <= 1 and entry["long"][who]["top_family"] in families()
        held = entry["long"]["model"]["held_where_truth_shows"]
        assert held is None or 0 <= held <= 1  # None (NaN in JSON): the visualizers never read as the family
    for family in families():
        assert (tmp_path / f"sheet-{family}.png").stat().st_size > 0
    assert "tiles" in proc.stdout and "held-out songs: song" in proc.stdout.replace("\n", " ")

"""Styles: parsing, render --style, style conditioning that a critic can see, warm starts."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, assert_user_error, call_cli

from synesthete import media
from synesthete.errors import InputError
from synesthete.settings import load_settings
from synesthete.styles import families, parse_style, resolve_style, style_name, style_vector

SONG = ROOT / "examples" / "drums_112bpm.wav"
TWO = ["waveform", "tiles"]  # two visually distinct families: a thin line or ring, a full-frame grid


def test_style_names():
    assert parse_style("kaleido+Spectrum") == ["spectrum", "kaleido"]  # registry order, case-insensitive
    assert style_name(["kaleido", "spectrum"]) == "spectrum+kaleido"
    assert style_vector(["spectrum", "kaleido"]).tolist() == [float(f in ("spectrum", "kaleido")) for f in families()]
    assert resolve_style("auto", 3) == resolve_style("auto", 3)
    assert {resolve_style("auto", seed)[0] for seed in range(40)} == set(families())  # auto reaches every family
    for bad in ("rings", "spectrum+", "spectrum+nope", ""):
        with pytest.raises(InputError, match="unknown style"):
            parse_style(bad)


def test_style_cli_errors_and_list(tmp_path):
    never = str(tmp_path / "never.mp4")
    proc = call_cli("render", str(SONG), "-o", never, "--style", "blobs")
    assert_user_error(proc, "unknown style 'blobs'", ", ".join(families()))
    for args in (("styles",), ("render", str(SONG), "-o", never, "--style", "list")):
        listed = call_cli(*args)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert all(name in listed.stdout for name in families())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_default_model_paints_styles_the_critic_tells_apart():
    """The committed DiT, asked for two visually distinct styles on the same music and noise, paints frames
    that the committed critic assigns to the requested family.

    A tiny model cannot show this within the test budget: trained from scratch for 300 steps, its
    adaLN layers barely respond to any condition yet (the style moved its output by 2.5 %), so this test
    uses the shipped cpu-preset weights, which are what a user renders with.
    """
    from synesthete.audio.synth import synthesize
    from synesthete.checkpoint import load_critic, load_models
    from synesthete.models.critic import critic_outputs
    from synesthete.render import generate_frames

    settings = load_settings(sampling={"steps": 8})
    models = load_models(settings, ROOT / "checkpoints", "cpu")
    critic = load_critic(ROOT / "checkpoints" / "critic.pt").network
    wave, _ = synthesize(5, settings, duration=1.0, drums=True, silence=False, dropout=False)
    index = [families().index(name) for name in TWO]
    correct = []
    for name in TWO:
        frames = generate_frames(models, wave, settings, style=[name])
        probs = critic_outputs(critic, frames)[0][:, index]  # [T, 2]
        correct.append(float((probs.argmax(1) == TWO.index(name)).float().mean()))
    assert min(correct) >= 0.7, correct


@pytest.mark.slow
def test_render_with_style_and_seed_is_deterministic(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"r{i}.mp4"
        proc = call_cli("render", str(SONG), "-o", str(out), "--duration", "0.5", "--steps", "4", "--style", "tiles",
                       "--seed", "4")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "tiles" in proc.stdout
        outs.append(media.load_video(out)[0])
    assert torch.equal(outs[0], outs[1])


def test_warm_start_keeps_old_weights_and_zero_initialises_new_conditioning():
    from synesthete.checkpoint import warm_start
    from synesthete.errors import CheckpointError
    from synesthete.models import DiT

    settings = load_settings("tiny")
    old = DiT.from_settings(settings)
    state = {k: v for k, v in old.state_dict().items() if k not in ("style_embed.weight", "context_embed")}
    fresh = DiT.from_settings(settings)
    kept = warm_start(fresh, state, "old.pt")
    assert kept == ["context_embed", "style_embed.weight"]
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    assert fresh.style_embed.weight.abs().sum() == 0 and fresh.context_embed.abs().sum() == 0
    bigger = DiT.from_settings(load_settings("tiny", dit={"dim": 64}))
    with pytest.raises(CheckpointError, match="does not fit"):
        warm_start(bigger, state, "old.pt")


def test_style_exemplar_is_the_styles_look_picked_by_the_seed():
    """The exemplar (the first window's clean context) is drawn in the requested style, chosen by the seed."""
    from synesthete.checkpoint import load_critic, load_models
    from synesthete.models.critic import critic_outputs
    from synesthete.render import style_exemplar

    settings = load_settings()
    models = load_models(settings, ROOT / "checkpoints", "cpu")
    critic = load_critic(ROOT / "checkpoints" / "critic.pt").network
    a = style_exemplar(models, settings, ["tiles"], seed=1)
    assert a.shape == (settings.render.overlap, settings.vae.latent_channels, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, style_exemplar(models, settings, ["tiles"], seed=1))
    assert not torch.allclose(a, style_exemplar(models, settings, ["tiles"], seed=2))  # another look
    for name in ("tiles", "waveform", "kaleido"):
        z = style_exemplar(models, settings, [name], seed=3)
        frames = models.decode(z)
        top = critic_outputs(critic, frames)[0].argmax(1)
        assert all(families()[int(i)] == name for i in top), (name, top)


def test_style_exemplar_in_a_given_look_is_that_look(tmp_path):
    """style_exemplar(look=params): the exemplar is the visualizers drawn with those parameters (a held-out
    clip's own, as eval renders it), whatever the seed; a look of another style is refused."""
    import random

    from conftest import tiny_checkpoints

    from synesthete.checkpoint import load_models
    from synesthete.render import style_exemplar
    from synesthete.visual.compose import params_for

    s = load_settings("tiny")
    models = load_models(s, tiny_checkpoints(tmp_path), "cpu")
    s = models.fitted(s)
    look = params_for(["tiles"], random.Random("a held-out clip"), s)
    a = style_exemplar(models, s, ["tiles"], seed=1, look=look)
    assert torch.equal(a, style_exemplar(models, s, ["tiles"], seed=2, look=look))  # the look, not the seed
    assert not torch.allclose(a, style_exemplar(models, s, ["tiles"], seed=1))
    look_of_seed = params_for(["tiles"], random.Random("synesthete-exemplar:1"), s)
    assert torch.equal(style_exemplar(models, s, ["tiles"], seed=7, look=look_of_seed),
                       style_exemplar(models, s, ["tiles"], seed=1))
    with pytest.raises(ValueError, match="not of the style"):
        style_exemplar(models, s, ["waveform"], seed=1, look=look)


@pytest.mark.parametrize("anchor", [0, 1])
def test_anchored_context_holds_the_exemplar_in_every_window(monkeypatch, tmp_path, anchor):
    """With render.anchor = a, every window's first a context frames are the exemplar's last a latents and the
    rest are the previous window's last frames; with 0 they are all the previous window's."""
    from conftest import tiny_checkpoints

    import synesthete.sampling as sampling
    from synesthete.checkpoint import load_models
    from synesthete.render import generate_frames, render_seed, style_exemplar

    s = load_settings("tiny").updated(render={"anchor": anchor, "overlap": 2}, device="cpu")
    models = load_models(s, tiny_checkpoints(tmp_path), "cpu")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = sampling.sample

    def recording(*args, **kwargs):  # the real sampler; keeps each window's context and result
        out = real(*args, **kwargs)
        seen.append((kwargs["context"], out))
        return out

    monkeypatch.setattr(sampling, "sample", recording)
    frames = generate_frames(models, torch.randn(s.audio.sample_rate) * 0.1, models.fitted(s), style=["tiles"])
    assert frames.shape[0] == s.video.fps
    exemplar = style_exemplar(models, models.fitted(s), ["tiles"], render_seed(models.fitted(s)))
    assert len(seen) > 3
    for i, (context, _) in enumerate(seen):
        past = exemplar[-2:] if i == 0 else seen[i - 1][1][0, -2:]
        expected = torch.cat([exemplar[-1:], past[1:]]) if anchor else past
        assert torch.allclose(context[0, :2], expected.float(), atol=1e-6), i


def _made_and_joins(layout):
    """Every frame a layout makes, in order of making within lanes and bridges, and where windows begin."""
    made, joins = [], []
    for i, start in enumerate(layout.starts):
        if i:
            made += range(start - layout.gap, start)  # the bridge
            joins += [start - layout.gap, start]
        made += range(start, start + layout.first)
        for m in range(1, layout.windows[i]):
            joins.append(start + layout.first + (m - 1) * layout.stride)
            made += range(joins[-1], joins[-1] + layout.stride)
    return made, joins


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("exemplar", [True, False])
def test_window_layout_covers_every_frame_once(lanes, exemplar):
    """Lanes and bridges tile the song: every frame is made exactly once, and the joins are where a new window's
    frames begin; a short song gets fewer lanes, each of at least MIN_LANE_WINDOWS windows."""
    from synesthete.render import MIN_LANE_WINDOWS, window_layout

    for total in (5, 60, 180, 300, 1801):
        layout = window_layout(total, 8, 2, lanes, exemplar)
        assert 1 <= layout.lanes <= lanes and (layout.lanes == 1 or min(layout.windows) >= MIN_LANE_WINDOWS)
        made, joins = _made_and_joins(layout)
        assert [f for f in made if f < total] == list(range(total)), (total, lanes)
        assert layout.joins() == sorted(j for j in joins if 0 < j < total)
        assert len(set(layout.windows[:-1])) <= 1 and layout.windows[-1] <= layout.windows[0]  # even lanes
    assert window_layout(300, 8, 2, 4, True).lanes == 4
    assert window_layout(300, 8, 4, 4, True).lanes == 1  # no room for a bridge between 4 + 4 context frames
    assert window_layout(300, 8, 2, 1, False).joins()[:3] == [8, 14, 20]  # no exemplar: the first window gives 8


def test_bridges_stay_out_of_silences():
    """A bridge would fall in a silence: it moves to where the music plays, or, if the silence is too long to
    leave, that boundary goes and the lanes are fewer. Either way every frame is still made once."""
    from synesthete.render import window_layout

    even = window_layout(600, 8, 2, 4, True)
    quiet = torch.zeros(600, dtype=torch.bool)
    quiet[even.starts[2] - 10 : even.starts[2] + 10] = True  # a short silence over the second boundary
    moved = window_layout(600, 8, 2, 4, True, quiet)
    assert moved.lanes == 4 and moved.starts[1] == even.starts[1] and moved.starts[2] != even.starts[2]
    for start in moved.starts[1:]:
        assert not quiet[start - moved.gap : start + 1].any()
    quiet[even.starts[2] - 60 : even.starts[2] + 60] = True  # too long to leave within a quarter of a lane
    fewer = window_layout(600, 8, 2, 4, True, quiet)
    assert fewer.lanes == 3 and all(not quiet[s - fewer.gap : s + 1].any() for s in fewer.starts[1:])
    for layout in (moved, fewer):
        made, _ = _made_and_joins(layout)
        assert [f for f in made if f < 600] == list(range(600))


def test_lanes_run_side_by_side_and_bridges_join_them(monkeypatch, tmp_path):
    """render.lanes = 2: every batched sample runs window m of both lanes, each lane starting from the exemplar;
    then one bridge window continues lane 0's end (after the anchor) and leads into lane 1's first frames, and
    its new frames are the ones between the lanes. The render is deterministic and as long as the song."""
    from conftest import tiny_checkpoints

    import synesthete.sampling as sampling
    from synesthete.checkpoint import load_models
    from synesthete.device import autocast
    from synesthete.render import generate_frames, render_seed, style_exemplar, window_layout

    s = load_settings("tiny", dit={"window": 8}).updated(
        render={"lanes": 2, "overlap": 2, "anchor": 1}, device="cpu")
    models = load_models(s, tiny_checkpoints(tmp_path, s), "cpu")
    s = models.fitted(s)
    seen: list[dict] = []
    real = sampling.sample

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append({**kwargs, "out": out})
        return out

    monkeypatch.setattr(sampling, "sample", recording)
    wave = torch.randn(int(3.5 * s.audio.sample_rate), generator=torch.Generator().manual_seed(0)) * 0.1
    frames = generate_frames(models, wave, s, style=["tiles"])
    total = round(3.5 * s.video.fps)
    assert frames.shape[0] == total
    layout = window_layout(total, 8, 2, 2, True)
    assert layout.lanes == 2 and len(seen) == max(layout.windows) + 1
    exemplar = style_exemplar(models, s, ["tiles"], render_seed(s))
    rounds, bridge = seen[:-1], seen[-1]
    for m, call in enumerate(rounds):
        lanes = sum(n > m for n in layout.windows)  # lane 1 may be a window shorter
        assert call["out"].shape[0] == lanes and lanes >= 1 + (m < min(layout.windows))
        assert call["context_mask"][:, :2].all() and not call["context_mask"][:, 2:].any()
        for lane in range(lanes):
            past = exemplar[-1] if m == 0 else rounds[m - 1]["out"][lane, -1]
            assert torch.allclose(call["context"][lane, 0], exemplar[-1]), (m, lane)  # the anchor
            assert torch.allclose(call["context"][lane, 1], past), (m, lane)
    mask = bridge["context_mask"]
    assert bridge["out"].shape[0] == 1 and mask[0].tolist() == [True, True, False, False, False, False, True, True]
    assert torch.allclose(bridge["context"][0, 0], exemplar[-1])
    assert torch.allclose(bridge["context"][0, 1], rounds[layout.windows[0] - 1]["out"][0, -1])  # lane 0's last
    assert torch.allclose(bridge["context"][0, 6:], rounds[0]["out"][1, 2:4])  # lane 1's first two frames
    start = layout.starts[1]
    with autocast(torch.device("cpu"), s.render.amp):
        between = models.decode(bridge["out"][0, 2:6]).float()
        lane1 = models.decode(rounds[0]["out"][1, 2:8]).float()
    assert torch.allclose(frames[start - 4 : start], between, atol=2e-2)
    assert torch.allclose(frames[start : start + 6], lane1, atol=2e-2)
    assert torch.equal(frames, generate_frames(models, wave, s, style=["tiles"]))


def test_settled_silence_follows_the_eval_definition():
    """settled_silence on a song's features marks the frames the eval counts as settled silence (sound, then
    1 s of digital silence, then sound): none before the silence has lasted eval.settle_seconds."""
    import numpy as np

    from synesthete.audio.features import FeatureExtractor
    from synesthete.metrics.quality import settled, silent_frames
    from synesthete.render import settled_silence

    s = load_settings()
    sr, fps = s.audio.sample_rate, s.video.fps
    wave = torch.randn(3 * sr, generator=torch.Generator().manual_seed(0)) * 0.2
    wave[sr : 2 * sr] = 0
    mine = settled_silence(FeatureExtractor(s.audio, fps)(wave), s).numpy()
    theirs = settled(silent_frames(wave, sr, fps, 3 * fps, s.eval.silence_db), round(s.eval.settle_seconds * fps))
    assert (mine == theirs).mean() >= 0.97 and 15 <= mine.sum() <= 30
    assert not mine[: fps + round(s.eval.settle_seconds * fps)].any() and not mine[2 * fps + 2 :].any()
    assert np.all(mine[fps + 12 : 2 * fps - 2])


def _shown(layout):
    """The song frames each lane (with the bridge into it) puts on screen, lane by lane."""
    out = []
    for lane, start in enumerate(layout.starts):
        first = start - (layout.gap if layout.bridged(lane) else 0)
        out.append(list(range(first, min(layout.limit(lane), layout.total))))
    return out


def test_cut_layout_tiles_every_frame_once_and_never_bridges_a_cut():
    """With cuts (sections) every frame is still shown once; a segment's first lane starts on its cut with no
    bridge into it (the picture cuts there); no join is listed at a cut; the longest segment sets the number
    of batched samples and shorter segments use no more lanes than that needs."""
    from synesthete.render import window_layout

    for total, cuts in ((600, (200, 430)), (300, (50,)), (1801, (400, 900, 1500)), (90, (30, 60))):
        layout = window_layout(total, 8, 2, 4, True, cuts=cuts)
        assert layout.cuts == cuts and sum(layout.segment_lanes) == layout.lanes
        assert [f for lane in _shown(layout) for f in lane] == list(range(total)), (total, cuts)
        firsts = [lane for lane in range(layout.lanes) if not layout.bridged(lane)]
        assert [layout.starts[lane] for lane in firsts] == [0, *cuts]
        assert not set(cuts) & set(layout.joins())
        bounds = [0, *cuts, total]
        rounds = max(max(window_layout(b - a, 8, 2, 4, True).windows) for a, b in zip(bounds, bounds[1:], strict=False))
        assert max(layout.windows) == rounds
    assert window_layout(600, 8, 2, 4, True, cuts=()) == window_layout(600, 8, 2, 4, True)


def test_section_plan_cuts_on_the_downbeats_of_the_excerpt():
    """The sections that play in an excerpt, from the frame nearest the downbeat each starts on; slivers of a
    section at either end of the excerpt keep their neighbour's look."""
    from synesthete.audio.analysis import Section
    from synesthete.render import MIN_SECTION_FRAMES, section_plan

    class Song:
        sections = [Section(0.0, 10.0, "A"), Section(10.0, 20.0, "B"), Section(20.0, 30.0, "A")]

    plan = section_plan(Song, 8.0, 14.0, 30, 420)
    assert [(f, s.label) for f, s in plan] == [(0, "A"), (60, "B"), (360, "A")]
    assert [(f, s.label) for f, s in section_plan(Song, 9.9, 5.0, 30, 150)] == [(0, "B")]  # a 3-frame sliver of A
    tail = section_plan(Song, 15.0, 5.0 + (MIN_SECTION_FRAMES - 1) / 30, 30, 150 + MIN_SECTION_FRAMES - 1)
    assert [s.label for _, s in tail] == ["B"]
    assert [(f, s.label) for f, s in section_plan(Song, 0.0, 30.0, 30, 900)] == [(0, "A"), (300, "B"), (600, "A")]


@pytest.mark.slow
def test_each_section_starts_from_its_own_look(monkeypatch, tmp_path):
    """Two segments, two looks: the lanes of each are sampled with their look's style and start from (and hold as
    anchor) their look's exemplar, in the same batched samples; the render is as long as the song."""
    from conftest import tiny_checkpoints

    import synesthete.sampling as sampling
    from synesthete.checkpoint import load_models
    from synesthete.render import Look, iter_windows, style_exemplar, window_layout
    from synesthete.styles import style_vector

    s = load_settings("tiny", dit={"window": 8}).updated(render={"lanes": 2, "overlap": 2, "anchor": 1},
                                                              device="cpu")
    models = load_models(s, tiny_checkpoints(tmp_path, s), "cpu")
    s = models.fitted(s)
    looks = [Look(["tiles"], style_exemplar(models, s, ["tiles"], 1), "A"),
             Look(["waveform"], style_exemplar(models, s, ["waveform"], 1), "B")]
    seen: list[dict] = []
    real = sampling.sample

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append({**kwargs, "out": out})
        return out

    monkeypatch.setattr(sampling, "sample", recording)
    features = torch.rand(150, 12)
    layout = window_layout(150, 8, 2, 2, True, cuts=(70,))
    frames = torch.cat(list(iter_windows(models, features, s, torch.Generator().manual_seed(0), layout=layout,
                                         looks=looks)))
    assert frames.shape[0] == 150 and layout.lanes >= 2 and layout.cuts == (70,)
    rounds = seen[: max(layout.windows)]
    for m, call in enumerate(rounds):
        active = [lane for lane in range(layout.lanes) if layout.windows[lane] > m]
        for row, lane in enumerate(active):
            look = looks[layout.segment_of(lane)]
            assert torch.equal(call["style"][row], style_vector(look.style)), (m, lane)
            assert torch.allclose(call["context"][row, 0], look.exemplar[-1]), (m, lane)  # its own look's anchor
    for call in seen[max(layout.windows) :]:  # bridges (within segments) keep their segment's look
        assert call["style"].shape[0] == sum(layout.bridged(lane) for lane in range(layout.lanes))


@pytest.mark.slow
def test_auto_gives_two_songs_two_looks_and_a_song_always_its_own(tmp_path):
    """--style auto with no seed: the seed, and with it the style and the looks, come from a hash of the song
    file: another song gets another, the same song (or a copy of it) the same; --seed overrides; sections of
    different kinds get different families, a repeated kind its own again."""
    from synesthete.audio.synth import synthesize
    from synesthete.pipeline import Synesthete
    from synesthete.render import seed_look
    from synesthete.styles import resolve_style, section_styles

    s = load_settings()
    songs = []
    for seed in (1, 2):
        wave, _ = synthesize(seed, s, duration=2.0)
        songs.append(tmp_path / f"song{seed}.wav")
        media.write_wav(songs[-1], wave, s.audio.sample_rate)
    copy = tmp_path / "copy.wav"
    copy.write_bytes(songs[0].read_bytes())
    pipe = Synesthete(s)
    a, b, again, twin = (pipe.plan(p) for p in (songs[0], songs[1], songs[0], copy))
    assert a.seed_from_song and a.seed != b.seed and again.seed == a.seed == twin.seed
    looks = {song: (job.style, seed_look(job.style, job.seed, s)) for song, job in (("a", a), ("b", b))}
    assert looks["a"] != looks["b"]
    assert (again.style, seed_look(again.style, again.seed, s)) == looks["a"]
    given = pipe.plan(songs[0], seed=7)
    assert given.seed == 7 and not given.seed_from_song and given.style == resolve_style("auto", 7)
    styles = section_styles("auto", a.seed, list("ABACB"))
    assert styles["A"] == resolve_style("auto", a.seed) and len({styles[k][0] for k in "ABC"}) == 3
    assert section_styles("tiles", a.seed, list("AB")) == {"A": ["tiles"], "B": ["tiles"]}
    assert seed_look(["tiles"], 3, s, "A") == seed_look(["tiles"], 3, s) != seed_look(["tiles"], 3, s, "B")


def test_style_messages(song, pipe):
    with pytest.raises(InputError) as info:
        pipe.render(song, style="+")
    assert str(info.value).startswith("unknown style '+': it has no family name before or after a '+'")
    with pytest.raises(InputError) as info:
        pipe.render(song, style="z" * 100_000)
    assert len(str(info.value)) < 400 and "(100002 characters)" in str(info.value)

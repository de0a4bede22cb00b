"""Noise schedule, samplers, classifier-free guidance on audio and style, and clean context frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from synesthete.errors import ConfigError
from synesthete.models import DiT
from synesthete.models.dit import dummy_inputs
from synesthete.sampling import NoiseSchedule, sample
from synesthete.settings import load_settings
from synesthete.styles import families


class PointMassDenoiser(nn.Module):
    """The exact denoiser of a dataset holding one latent: ``cond`` with audio, ``uncond`` without."""

    def __init__(self, schedule: NoiseSchedule, cond: torch.Tensor, uncond: torch.Tensor) -> None:
        super().__init__()
        self.schedule = schedule
        self.config = schedule.config  # the noise schedule sample() runs
        self.register_buffer("cond", cond)
        self.register_buffer("uncond", uncond)
        self.calls: list[int] = []

    def forward(self, x, t, features, drop_audio):
        """Return the exact target (eps or v) for the clean latent this sample's audio selects."""
        self.calls.append(x.shape[0])
        x0 = torch.where(drop_audio.view(-1, 1, 1, 1, 1), self.uncond, self.cond).expand_as(x)
        a, s = self.schedule.coefficients(t, x)
        noise = (x - a * x0) / s
        return self.schedule.target(x0, noise, t)


def perturbed_dit(settings, seed: int = 0) -> DiT:
    """A tiny DiT whose zero-initialised layers have random weights, so its output depends on every input."""
    torch.manual_seed(seed)
    dit = DiT.from_settings(settings)
    gen = torch.Generator().manual_seed(seed)
    for name, param in dit.named_parameters():
        if "adaLN_modulation" in name or name.startswith("final.") or name in ("style_embed.weight", "context_embed"):
            with torch.no_grad():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return dit


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_monotone_and_ends_in_noise(preset, schedule):
    cfg = load_settings(preset).updated(dit={"schedule": schedule}).dit
    ns = NoiseSchedule(cfg)
    ab = ns.alphas_cumprod
    assert ab.shape == (cfg.num_train_timesteps,)
    assert (ab[1:] < ab[:-1]).all() and ab[0] < 1 and ab[0] > 0.99
    assert ns.terminal_alpha_bar < 1e-3  # the seed's linear-50 schedule stopped at 0.6


def test_sampling_timesteps_start_at_pure_noise():
    ns = NoiseSchedule(load_settings("cpu").dit)
    for steps in (1, 4, 20, 50, 1000):
        ts = ns.timesteps(steps)
        assert len(ts) == steps and ts[0] == ns.num_timesteps - 1 and ts[-1] >= 0
        assert (ts[1:] < ts[:-1]).all()
    with pytest.raises(ValueError):
        ns.timesteps(0)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_q_sample_and_predictions_round_trip(prediction):
    cfg = load_settings("cpu").updated(dit={"prediction": prediction}).dit
    ns = NoiseSchedule(cfg)
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(0, ns.num_timesteps, 37)
    x0 = torch.randn(len(t), 4, 3, 8, 8, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    x_t = ns.q_sample(x0, noise, t)
    out = ns.target(x0, noise, t)
    # eps-prediction divides by sqrt(alpha_bar): allow float32 rounding scaled by that factor.
    tol = 1e-5 / ns.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1, 1) if prediction == "eps" else 1e-5
    assert ((ns.predict_x0(x_t, t, out) - x0).abs() <= tol).all()
    assert torch.allclose(ns.predict_eps(x_t, t, out), noise, atol=1e-4)
    if prediction == "v":
        a, s = ns.coefficients(t, x0)
        assert torch.allclose(out, a * noise - s * x0)
    else:
        assert torch.equal(out, noise)
    # At the last step, x_t is essentially pure noise.
    last = torch.full((1,), ns.num_timesteps - 1)
    assert torch.allclose(ns.q_sample(x0[:1], noise[:1], last), noise[:1], atol=1e-3)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_recover_the_exact_denoisers_data(prediction, sampler):
    s = load_settings("tiny").updated(dit={"prediction": prediction})
    ns = NoiseSchedule(s.dit)
    shape = (2, s.dit.window, s.vae.latent_channels, s.latent_size, s.latent_size)
    gen = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(shape[1:], generator=gen) / 2, torch.randn(shape[1:], generator=gen) / 2
    model = PointMassDenoiser(ns, cond, uncond)
    feats = dummy_inputs(s, batch=2)[2]
    out = sample(model, feats, shape, s.sampling, steps=10, sampler=sampler, guidance=1.0, generator=gen)
    assert torch.allclose(out, cond.expand(shape), atol=1e-3)
    assert set(model.calls) == {2}  # guidance 1: no unconditional pass
    # Guidance extrapolates from the unconditional towards the conditional prediction, in one batched call.
    model.calls.clear()
    out = sample(model, feats, shape, s.sampling, steps=10, sampler=sampler, guidance=2.5, generator=gen)
    assert torch.allclose(out, (uncond + 2.5 * (cond - uncond)).expand(shape), atol=1e-3)
    assert set(model.calls) == {4} and len(model.calls) == 10


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sample_shape_finite_and_deterministic(sampler):
    s = load_settings("tiny")
    dit = perturbed_dit(s)
    dit.train()
    _, _, feats, _ = dummy_inputs(s, batch=2)
    shape = (2, s.dit.window, s.vae.latent_channels, s.latent_size, s.latent_size)
    a = sample(dit, feats, shape, s.sampling, sampler=sampler, generator=torch.Generator().manual_seed(0))
    b = sample(dit, feats, shape, s.sampling, sampler=sampler, generator=torch.Generator().manual_seed(0))
    c = sample(dit, feats, shape, s.sampling, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert a.shape == shape and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert dit.training  # the caller's mode is restored
    assert not any(p.grad is not None for p in dit.parameters())
    # Different audio gives different latents from the same noise.
    d = sample(dit, torch.rand_like(feats), shape, s.sampling, sampler=sampler,
               generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, d, atol=1e-4)


def test_context_frames_are_returned_unchanged_and_continued():
    s = load_settings("tiny")
    dit = perturbed_dit(s)
    _, _, feats, _ = dummy_inputs(s, batch=1)
    shape = (1, s.dit.window, s.vae.latent_channels, s.latent_size, s.latent_size)
    context = torch.randn(shape, generator=torch.Generator().manual_seed(5)) * 2
    mask = torch.zeros(1, s.dit.window, dtype=torch.bool)
    mask[:, :2] = True
    free = sample(dit, feats, shape, s.sampling, steps=6, generator=torch.Generator().manual_seed(0))
    out = sample(dit, feats, shape, s.sampling, steps=6, generator=torch.Generator().manual_seed(0), context=context,
                 context_mask=mask)
    assert torch.equal(out[:, :2], context[:, :2])  # never denoised, returned exactly
    assert torch.isfinite(out).all()
    # The new frames continue the context: other context frames give other continuations.
    assert not torch.allclose(out[:, 2:], free[:, 2:], atol=1e-4)
    other = sample(dit, feats, shape, s.sampling, steps=6, generator=torch.Generator().manual_seed(0),
                   context=-context, context_mask=mask)
    assert not torch.allclose(out[:, 2:], other[:, 2:], atol=1e-4)
    with pytest.raises(ValueError):
        sample(dit, feats, shape, s.sampling, context=context)


class StyledPointMass(nn.Module):
    """Exact denoiser whose clean latent depends on which of audio and style are dropped."""

    def __init__(self, schedule: NoiseSchedule, targets: dict[tuple[bool, bool], float]) -> None:
        super().__init__()
        self.schedule, self.targets = schedule, targets
        self.config = schedule.config  # the noise schedule sample() runs
        self.batches: list[int] = []

    def forward(self, x, t, features, drop_audio, style=None, drop_style=None):
        self.batches.append(x.shape[0])
        values = [self.targets[(bool(a), bool(b))] for a, b in zip(drop_audio, drop_style, strict=True)]
        x0 = torch.tensor(values).view(-1, 1, 1, 1, 1).expand_as(x)
        a, s = self.schedule.coefficients(t, x)
        return self.schedule.target(x0, (x - a * x0) / s, t)


def test_audio_and_style_guidance_compose_with_one_pass_each():
    s = load_settings("tiny")
    schedule = NoiseSchedule(s.dit)
    targets = {(False, False): 1.0, (True, False): 0.4, (False, True): -0.5, (True, True): 0.0}
    model = StyledPointMass(schedule, targets)
    feats = dummy_inputs(s, batch=2)[2]
    style = torch.zeros(2, 7)
    style[:, 1] = 1
    shape = (2, s.dit.window, 1, 2, 2)
    out = sample(model, feats, shape, s.sampling, steps=10, sampler="ddim", guidance=2.0, style=style,
                 style_guidance=3.0, generator=torch.Generator().manual_seed(0))
    # e(s,a) + (g_a - 1)(e(s,a) - e(s,0)) + (g_s - 1)(e(s,a) - e(0,a)) = 1 + 0.6 + 2 * 1.5
    assert torch.allclose(out, torch.full(shape, 4.6), atol=1e-3)
    assert set(model.batches) == {6}  # three passes of a batch of two, in one forward per step
    model.batches.clear()
    sample(model, feats, shape, s.sampling, steps=3, guidance=1.0, style=style, style_guidance=1.0)
    assert set(model.batches) == {2}  # scales of 1 skip their passes


def test_sample_rejects_unknown_sampler():
    s = load_settings("tiny")
    with pytest.raises(ValueError, match="sampler"):
        sample(DiT.from_settings(s), dummy_inputs(s)[2], (1, 4, 4, 2, 2), s.sampling, sampler="euler")


class Recorder(nn.Module):
    """Wraps a real DiT and keeps what each forward was given (to see the context frames training shows it)."""

    def __init__(self, dit: nn.Module) -> None:
        super().__init__()
        self.dit = dit
        self.seen: list[dict] = []

    @property
    def config(self):
        return self.dit.config

    def forward(self, x, t, features, drop_audio, **kw):
        self.seen.append({"x": x.detach().clone(), "t": t.clone(), **kw})
        return self.dit(x, t, features, drop_audio, **kw)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_training_context_is_the_networks_own_prediction_when_asked(share):
    """diffusion.predicted_context: context frames of the windows that have them show the predictor's one-step
    x0 estimate from a copy noised within predicted_context_t, not the true latents; other frames and windows
    are as before."""
    from synesthete.train.losses import diffusion_loss

    s = load_settings("tiny").updated(diffusion={
        "predicted_context": share, "predicted_context_t": (0.3, 0.5), "context_noise_max": 0.0, "max_context": 3,
        "hinge_weight": 0.0,
    })
    model, predictor = Recorder(perturbed_dit(s, 0)), Recorder(perturbed_dit(s, 1))
    x0, _, feats, _ = dummy_inputs(s, batch=8)
    style = torch.zeros(8, 7)
    style[:, 0] = 1
    schedule = NoiseSchedule(s.dit)
    result = diffusion_loss(model, schedule, x0, feats, s, torch.Generator().manual_seed(3), style=style,
                            predictor=predictor)
    assert torch.isfinite(result.loss) and result.mse.shape == result.t.shape == (8,)
    seen = model.seen[0]
    ctx = seen["context_mask"]
    assert ctx.any(1).sum() >= 2 and (~ctx.any(1)).any()  # windows with and without context in this draw
    shown = seen["x"][ctx]  # the context frames the network saw (exactly clean: context_noise_max 0)
    if share == 0:
        assert not predictor.seen and torch.equal(shown, x0[ctx])
        return
    (call,) = predictor.seen  # one no-grad pass over the windows that have context
    with_ctx = ctx.any(1)
    assert call["x"].shape[0] == int(with_ctx.sum())
    t = call["t"]
    lo, hi = 0.3 * (s.dit.num_train_timesteps - 1), 0.5 * (s.dit.num_train_timesteps - 1)
    assert ((t >= round(lo)) & (t <= round(hi))).all()
    with torch.no_grad():
        out = predictor.dit(call["x"], t, feats[with_ctx], torch.zeros(len(t), dtype=torch.bool),
                            style=style[with_ctx], drop_style=torch.zeros(len(t), dtype=torch.bool))
    guess = schedule.predict_x0(call["x"], t, out)
    assert torch.allclose(shown, guess[ctx[with_ctx]], atol=1e-5)
    assert not torch.allclose(shown, x0[ctx], atol=1e-2)


def _loss_with_anchors(s) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """One diffusion_loss call on 12 random windows with anchors: (what the network saw, x0, anchors)."""
    from synesthete.train.losses import diffusion_loss

    model = Recorder(perturbed_dit(s, 0))
    x0, _, feats, _ = dummy_inputs(s, batch=12)
    anchors = torch.randn(12, *x0.shape[2:]) + 5
    diffusion_loss(model, NoiseSchedule(s.dit), x0, feats, s, torch.Generator().manual_seed(1),
                   style=torch.zeros(12, 7), anchors=anchors)
    return model.seen[0], x0, anchors


def test_training_anchor_is_the_first_context_frame_of_windows_with_two_or_more():
    """diffusion.anchor_prob = 1: every window with >= 2 context frames shows its anchor latent as context frame
    0 and its own next frames after it; windows with fewer context frames are untouched."""

    s = load_settings("tiny").updated(diffusion={
        "anchor_prob": 1.0, "predicted_context": 0.0, "context_noise_max": 0.0, "max_context": 3, "hinge_weight": 0.0,
        "bridge_prob": 0.0,
    })
    seen, x0, anchors = _loss_with_anchors(s)
    k = seen["context_mask"].sum(1)
    assert (k >= 2).any() and (k == 1).any()
    for i in range(12):
        if k[i] >= 2:
            assert torch.equal(seen["x"][i, 0], anchors[i]) and torch.equal(seen["x"][i, 1 : k[i]], x0[i, 1 : k[i]])
        elif k[i] == 1:
            assert torch.equal(seen["x"][i, 0], x0[i, 0])


def test_bridge_windows_get_clean_context_at_both_ends():
    """diffusion.bridge_prob = 1: every window also shows its own last j frames as clean context (1 <= j, at least
    one frame left to generate), and an anchor replaces only a leading context frame."""
    from synesthete.train.losses import context_masks

    s = load_settings("tiny", dit={"window": 8}).updated(diffusion={
        "bridge_prob": 1.0, "anchor_prob": 1.0, "predicted_context": 0.0, "context_noise_max": 0.0,
        "max_context": 3, "hinge_weight": 0.0,
    })
    masks = context_masks(400, 8, s, torch.Generator().manual_seed(0))
    assert masks[:, -1].all() and (~masks).any(1).all()
    trailing = masks.flip(1).long().cumprod(1).sum(1)
    assert set(trailing.tolist()) == {1, 2, 3} and (masks.long().cumprod(1).sum(1) == 0).any()
    none = context_masks(400, 8, s.updated(diffusion={"bridge_prob": 0.0}), torch.Generator().manual_seed(0))
    assert not none[:, -1].any()

    seen, x0, anchors = _loss_with_anchors(s)
    mask = seen["context_mask"]
    for i in range(12):
        lead = int(mask[i].long().cumprod(0).sum())
        tail = int(mask[i].flip(0).long().cumprod(0).sum())
        assert tail >= 1 and lead + tail < 8
        assert torch.equal(seen["x"][i, 8 - tail :], x0[i, 8 - tail :])  # the future, as it is
        if lead >= 2:
            assert torch.equal(seen["x"][i, 0], anchors[i])
        elif lead == 0:
            assert not torch.equal(seen["x"][i, 0], anchors[i])


# --------------------------------------------------------------------------------------------- guidance distillation
def _student_of(teacher: DiT, settings) -> DiT:
    """A guidance-embedding DiT warm-started from ``teacher``, as `train diffusion --teacher` starts it."""
    from synesthete.checkpoint import warm_start

    student = DiT.from_settings(settings.updated(dit={"guidance_embed": True}))
    new = warm_start(student, teacher.state_dict(), "teacher")
    assert new and all(name.startswith("guidance_embedder.") for name in new)
    return student


def test_a_fresh_student_is_its_teachers_conditional_prediction_at_every_scale():
    s = load_settings("tiny")
    teacher = perturbed_dit(s, 3).eval()
    student = _student_of(teacher, s).eval()
    x, t, feats, drop = dummy_inputs(s, batch=3)
    style = torch.zeros(3, 7)
    style[:, 2] = 1
    want = teacher(x, t, feats, drop, style=style)
    for w in (1.0, 2.0, 3.0):
        got = student(x, t, feats, drop, style=style, guidance=torch.full((3,), w))
        assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="guidance"):  # a plain DiT is never silently given a scale
        teacher(x, t, feats, drop, guidance=torch.ones(3))


def test_a_distilled_dit_samples_in_one_pass_and_is_told_the_scale():
    s = load_settings("tiny")
    teacher = perturbed_dit(s, 4)
    student = _student_of(teacher, s)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # give the scale an effect, so that the test sees which scale each step got
        for p in student.guidance_embedder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    recorder = Recorder(student)
    feats = dummy_inputs(s, batch=2)[2]
    size = s.latent_size
    shape = (2, s.dit.window, s.vae.latent_channels, size, size)
    style = torch.zeros(2, 7)
    style[:, 0] = 1

    def run(model, **kw):
        return sample(model, feats, shape, s.sampling, steps=4, guidance=2.5, style=style,
                      generator=torch.Generator().manual_seed(7), **kw)

    out = run(recorder)
    assert [call["x"].shape[0] for call in recorder.seen] == [2] * 4  # one pass per step, not two
    scales = [call["guidance"].tolist() for call in recorder.seen]
    assert scales == [[2.5, 2.5]] * 4  # every step is guided
    assert torch.equal(out, run(student))  # deterministic for a seed
    # At zero-initialised guidance weights the student is its teacher's conditional prediction: the same
    # samples as the teacher without guidance.
    plain = sample(teacher, feats, shape, s.sampling, steps=4, guidance=1.0, style=style,
                   generator=torch.Generator().manual_seed(7))
    assert torch.allclose(run(_student_of(teacher, s)), plain, atol=1e-5)


def test_distillation_targets_the_teachers_guided_output():
    """diffusion_loss with a teacher: the target is e(a) + (w - 1)(e(a) - e(0)) of the teacher on the same
    inputs, so a fresh student (its teacher's conditional prediction) has no error at w = 1 and some at w = 3."""
    from synesthete.train.losses import Condition, diffusion_loss, teacher_output

    base = load_settings("tiny").updated(diffusion={"hinge_weight": 0.0, "predicted_context": 0.0, "cfg_dropout": 0.0})
    teacher = perturbed_dit(base, 5).eval()
    x0, _, feats, _ = dummy_inputs(base, batch=6)
    style = torch.zeros(6, 7)
    style[:, 3] = 1
    errors = {}
    for w in (1.0, 3.0):
        s = base.updated(diffusion={"distill_guidance": (w, w)})
        recorder = Recorder(_student_of(teacher, base))
        logs = diffusion_loss(recorder, NoiseSchedule(s.dit), x0, feats, s,
                              torch.Generator().manual_seed(2), style=style, teacher=teacher).logs
        seen = recorder.seen[0]
        assert torch.equal(seen["guidance"], torch.full((6,), w))
        errors[w] = float(logs["mse"])
        # The target, recomputed by hand from the teacher's two passes on what the student saw.
        t = seen["t"]
        none, every = torch.zeros(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool)
        kw = {k: seen[k] for k in ("style", "drop_style", "context_mask", "context_t")}
        with torch.no_grad():
            cond = teacher(seen["x"], t, feats, none, **kw)
            uncond = teacher(seen["x"], t, feats, every, **kw)
            target = teacher_output(teacher, seen["x"], t, Condition(feats, none, torch.full((6,), w), style,
                                    kw["drop_style"], kw["context_mask"], kw["context_t"]))
        assert torch.allclose(target, cond + (w - 1) * (cond - uncond), atol=1e-5)
    assert errors[1.0] < 1e-10 < 1e-4 < errors[3.0]


# --------------------------------------------------------------------------------------------- step distillation
def _distilled_teacher(settings, seed: int) -> DiT:
    """A guidance-distilled tiny DiT whose guidance weights are random too (the scale changes its output)."""
    teacher = _student_of(perturbed_dit(settings, seed), settings)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in teacher.guidance_embedder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return teacher.eval()


@pytest.mark.parametrize("substeps", [2, 5])
def test_the_step_target_is_one_ddim_step_to_where_the_teachers_steps_land(substeps):
    """stepped_target, checked row by row against the sampler's own DDIM steps: the teacher's ``substeps`` steps
    from t to t_next on the finer grid (4 x substeps sampling steps), and the student's one step from the same
    x_t with the target's x0."""
    from synesthete.sampling import DDIMSampler
    from synesthete.train.losses import Condition, grid_timesteps, stepped_target, teacher_output

    s = load_settings("tiny")
    teacher = _distilled_teacher(s, 6)
    schedule = NoiseSchedule(s.dit)
    x, _, feats, drop = dummy_inputs(s, batch=6)
    times = grid_timesteps(schedule, 4, substeps, 6, torch.Generator().manual_seed(1), x.device)
    t, t_next = times[:, 0], times[:, -1]
    grid = schedule.timesteps(4).tolist() + [-1]
    fine = schedule.timesteps(4 * substeps).tolist() + [-1]
    assert times.shape == (6, substeps + 1)
    assert set(t.tolist()) <= set(grid[:-1]) and len(set(t.tolist())) > 1
    for a, b, row in zip(t.tolist(), t_next.tolist(), times.tolist(), strict=True):
        assert grid[grid.index(a) + 1] == b
        assert row == fine[fine.index(a) : fine.index(a) + substeps + 1]
    ctx = torch.zeros(6, s.dit.window, dtype=torch.bool)
    ctx[:, :2] = True
    style = torch.zeros(6, 7)
    style[:, 1] = 1
    c = Condition(feats, drop, torch.full((6,), 2.0), style, torch.zeros(6, dtype=torch.bool), ctx,
                  torch.zeros(6, dtype=torch.long))
    target = stepped_target(teacher, schedule, x, times, c, clip_x0=0.0)
    ddim = DDIMSampler(schedule)
    for b in range(6):
        row = Condition(*(v[b : b + 1] for v in (feats, drop, c.w, style, c.drop_style, ctx, c.t_ctx)))

        def step(z, at, to, row=row, keep=ctx[b : b + 1, :, None, None, None]):
            tt = torch.tensor([at])
            out = teacher_output(teacher, z, tt, row)
            return torch.where(keep, z, ddim.step(z, schedule.predict_x0(z, tt, out), schedule.predict_eps(z, tt, out),
                                                  at, to))

        z_next = x[b : b + 1]
        for at, to in zip(times[b, :-1].tolist(), times[b, 1:].tolist(), strict=True):
            z_next = step(z_next, at, to)
        tt = t[b : b + 1]
        one = ddim.step(x[b : b + 1], schedule.predict_x0(x[b : b + 1], tt, target[b : b + 1]),
                        schedule.predict_eps(x[b : b + 1], tt, target[b : b + 1]), int(t[b]), int(t_next[b]))
        gen = ~ctx[b]
        assert torch.allclose(one[0, gen], z_next[0, gen], atol=1e-4)
        assert not torch.allclose(z_next[0, gen], x[b, gen], atol=1e-3)  # the teacher's steps moved it


def test_step_distillation_trains_on_the_grid_with_the_teachers_scale():
    """diffusion_loss with distill_steps: every window's timestep is on the student's grid, the student and a
    guidance-distilled teacher are told the same scale, and a student that is its teacher has some error
    (two steps are not one)."""
    from synesthete.train.losses import diffusion_loss

    s = load_settings("tiny").updated(diffusion={"hinge_weight": 0.0, "predicted_context": 0.0,
                                                 "distill_steps": 4, "distill_guidance": (2.0, 2.0)})
    teacher = _distilled_teacher(s, 7)
    student = Recorder(_distilled_teacher(s, 7))
    x0, _, feats, _ = dummy_inputs(s, batch=8)
    loss = diffusion_loss(student, NoiseSchedule(s.dit), x0, feats, s, torch.Generator().manual_seed(3),
                          teacher=Recorder(teacher))
    seen = student.seen[0]
    assert set(seen["t"].tolist()) <= set(NoiseSchedule(s.dit).timesteps(4).tolist())
    assert torch.equal(seen["guidance"], torch.full((8,), 2.0))
    assert torch.isfinite(loss.loss) and float(loss.logs["mse"]) > 1e-6


def test_a_baked_style_guidance_target_is_what_the_sampler_computes_with_it():
    """With ``diffusion.distill_style_guidance`` s, the teacher's target is its output guided on the audio at w
    and on the style at s, exactly as ``sampling``'s passes combine them at render (a plain teacher: three
    passes; a guidance-distilled one: two), and a style-dropped window is left as it is."""
    from synesthete.sampling import guidance_passes
    from synesthete.train.losses import Condition, teacher_output

    s = load_settings("tiny")
    x, t, feats, _ = dummy_inputs(s, batch=4)
    style = torch.zeros(4, 7)
    style[:, 2] = 1
    ctx = torch.zeros(4, s.dit.window, dtype=torch.bool)
    ctx[:, :2] = True
    none = torch.zeros(4, dtype=torch.bool)
    t_ctx = torch.zeros(4, dtype=torch.long)
    for teacher in (perturbed_dit(s, 3).eval(), _distilled_teacher(s, 4)):
        c = Condition(feats, none, torch.full((4,), 2.0), style, none, ctx, t_ctx, style_scale=2.5)
        passes = guidance_passes(teacher, feats, style, 2.0, 2.5)
        passes.context_mask, passes.context_t = ctx.repeat(passes.n, 1), t_ctx.repeat(passes.n)
        with torch.no_grad():
            expected = passes.output(teacher, x, t)
            target = teacher_output(teacher, x, t, c)
            plain = teacher_output(teacher, x, t, dataclasses.replace(c, style_scale=1.0))
        assert torch.allclose(target, expected, atol=1e-5)
        assert (target - plain).abs().max() > 1e-3  # the style term is there
        dropped = dataclasses.replace(c, drop_style=torch.tensor([True, False, False, False]))
        with torch.no_grad():
            both = teacher_output(teacher, x, t, dropped), teacher_output(
                teacher, x, t, dataclasses.replace(dropped, style_scale=1.0))
        assert torch.allclose(both[0][0], both[1][0], atol=1e-6)  # no style to guide on


def test_per_family_style_guidance_bakes_each_windows_own_scale():
    """``diffusion.distill_style_guidance_families``: each window's target is guided at its family's scale (a mix
    at their weighted mean, others at ``distill_style_guidance``), as if each window were its own batch."""
    from synesthete.train.losses import Condition, style_scales, teacher_output

    s = load_settings("tiny", diffusion={"distill_style_guidance": 2.0,
                                         "distill_style_guidance_families": {"pulse": 3.0, "trails": 4.0}})
    names = families()
    style = torch.zeros(4, len(names))
    style[0, names.index("pulse")] = 1
    style[1, names.index("kaleido")] = 1
    style[2, names.index("pulse")] = style[2, names.index("trails")] = 0.5
    scales = style_scales(style, s)
    assert scales.tolist() == [3.0, 2.0, 3.5, 2.0]  # the last window has no style: the default
    x, t, feats, _ = dummy_inputs(s, batch=4)
    ctx = torch.zeros(4, s.dit.window, dtype=torch.bool)
    ctx[:, :2] = True
    none = torch.zeros(4, dtype=torch.bool)
    teacher = perturbed_dit(s, 3).eval()
    c = Condition(feats, none, torch.full((4,), 2.0), style, none, ctx, torch.zeros(4, dtype=torch.long), scales)
    with torch.no_grad():
        target = teacher_output(teacher, x, t, c)
        for i in range(3):
            one = Condition(*(v[i:i + 1] for v in (feats, none, c.w, style, none, ctx, c.t_ctx)), float(scales[i]))
            assert torch.allclose(target[i:i + 1], teacher_output(teacher, x[i:i + 1], t[i:i + 1], one), atol=1e-5)
    bad = load_settings("tiny", diffusion={"distill_style_guidance_families": {"pulsar": 3.0}})
    with pytest.raises(ConfigError, match="pulsar is not a visualizer family"):
        style_scales(style, bad)

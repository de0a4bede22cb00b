#!/usr/bin/env bash
# Reproduce the committed default checkpoints (checkpoints/vae.pt, critic.pt, diffusion.pt) at the cpu preset.
# Intermediate checkpoints and TensorBoard events stay under runs/ (ignored by git); only --export writes checkpoints/.
# Usage: scripts/train_default.sh [VAE_STEPS] [DIFFUSION_STEPS] [CRITIC_STEPS] [STYLE_STEPS] [LONG_STEPS] [DISTILL_STEPS]
#
# The diffusion model is trained in stages, as the committed one was: an audio-only stage from scratch, a stage
# that adds the style and clean-context conditioning, then a long stage at a lower learning rate with noised,
# predicted and anchored context (today's training defaults), each warm-started from the one before (--init),
# then a guidance distillation of that teacher (--teacher: one pass per step), then stage 7: the teacher
# goes on with real songs, and a new student is distilled from it, and last stage 8: that student with style
# guidance baked in. The shipped diffusion.pt is that student, and its teacher is kept beside it as
# diffusion_teacher.pt. The lengths of stages 7 and 8: REAL_STEPS, HARD_STEPS and DISTILL7_STEPS in the
# environment. To continue from the committed weights instead, run stage 7's last two
# `train diffusion` lines with --init checkpoints/diffusion_teacher.pt on the first.
set -euo pipefail
cd "$(dirname "$0")/.."
VAE_STEPS="${1:-3000}"
DIFFUSION_STEPS="${2:-3300}"
CRITIC_STEPS="${3:-2000}"
STYLE_STEPS="${4:-2500}"
LONG_STEPS="${5:-10000}"
DISTILL_STEPS="${6:-500}"  # the committed student is step 500 (of a run planned to 6,000 steps)

uv run synesthete train vae --preset cpu --seed 0 --run-name default-vae --max-steps "$VAE_STEPS" \
    --export checkpoints/
uv run synesthete train critic --seed 0 --run-name default-critic --max-steps "$CRITIC_STEPS" --export checkpoints/
# Stage 1 (audio only): the first default was trained by the code before styles existed; with today's code this
# stage learns the style too, which only helps.
uv run synesthete train diffusion --preset cpu --seed 0 --run-name default-diffusion --max-steps "$DIFFUSION_STEPS" \
    --vae checkpoints/vae.pt --export checkpoints/
# Stage 2: style and clean-context conditioning, warm-started from stage 1.
uv run synesthete train diffusion --preset cpu --seed 1 --run-name default-style --max-steps "$STYLE_STEPS" \
    --vae checkpoints/vae.pt --init checkpoints/diffusion.pt --export checkpoints/
# Stages 3-5: the committed DiT had 6,000 steps with noised context, then 1,501 with predicted context, 4,000
# with predicted and anchored context and 2,000 that also had bridge windows (the model card); the defaults now
# do all four.
uv run synesthete train diffusion --preset cpu --seed 3 --run-name default-long --max-steps "$LONG_STEPS" --lr 2e-4 \
    --vae checkpoints/vae.pt --init checkpoints/diffusion.pt --export checkpoints/
# Stage 6: guidance distillation. The teacher is kept as diffusion_teacher.pt (what later stages warm-start from).
cp checkpoints/diffusion.pt checkpoints/diffusion_teacher.pt
uv run synesthete train diffusion --preset cpu --seed 18 --run-name default-distill --max-steps "$DISTILL_STEPS" \
    --lr 1e-4 --vae checkpoints/vae.pt --teacher checkpoints/diffusion_teacher.pt --export checkpoints/
# Stage 7 (2026-12-01 and 2026-12-02): the teacher goes on with real songs mixed in (scripts/fetch_music.sh).
# The committed teacher had 986 steps (cosine planned to 1,400, stopped by SIGTERM), then 900 with loud excerpts
# turned down to render.level (today's stream does that always; the first two are one run here), then 900 with the
# hard families weighted as below (2,000 more of those made it worse). The student is distilled on procedural clips
# only, from stage 6: distilled on the mix, it loses the procedural FSD
# (docs/experiments/2026-12-02-real-music-round-4.md).
# Stage 8 (2026-12-02): the same student, with style guidance 2 baked into its target
# (diffusion.distill_style_guidance; docs/experiments/2026-12-02-style-guidance.md).
scripts/fetch_music.sh
uv run synesthete train diffusion --preset cpu --seed 21 --run-name default-real --max-steps "${REAL_STEPS:-1886}" \
    --lr 2e-4 --vae checkpoints/vae.pt --init checkpoints/diffusion_teacher.pt --music data/music \
    --export runs/default-real-export/
cp checkpoints/diffusion.pt runs/default-stage6.pt
HARD='["pulse","pulse","pulse","waveform","waveform","waveform","trails","trails","trails","spectrum","spectrum",'
HARD+='"particles","kaleido","tiles"]'
SYNESTHETE_DATA__VISUALIZERS="$HARD" SYNESTHETE_DATA__COMPOSE_PROB=0.15 uv run synesthete train diffusion \
    --preset cpu --seed 27 --run-name default-hard --max-steps "${HARD_STEPS:-900}" --lr 2e-4 \
    --vae checkpoints/vae.pt --init runs/default-real-export/diffusion.pt --music data/music \
    --export runs/default-hard-export/
cp runs/default-hard-export/diffusion.pt checkpoints/diffusion_teacher.pt
SYNESTHETE_DATA__VISUALIZERS="$HARD" SYNESTHETE_DATA__COMPOSE_PROB=0.15 SYNESTHETE_DIFFUSION__DISTILL_STYLE_GUIDANCE=2 \
    uv run synesthete train diffusion --preset cpu --seed 28 --run-name default-distill8 \
    --max-steps "${DISTILL7_STEPS:-400}" --lr 1e-4 \
    --vae checkpoints/vae.pt --teacher checkpoints/diffusion_teacher.pt --init runs/default-stage6.pt \
    --export checkpoints/
uv run synesthete eval -o runs/default-eval.json --plot runs/default-eval.png --sheet runs/default-sheet.png \
    --overwrite

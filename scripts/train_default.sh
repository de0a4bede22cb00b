#!/usr/bin/env bash
# Reproduce the committed default checkpoints (checkpoints/vae.pt, checkpoints/diffusion.pt) at the cpu preset.
# Intermediate checkpoints and TensorBoard events stay under runs/ (ignored by git); only --export writes checkpoints/.
# Usage: scripts/train_default.sh [VAE_STEPS] [DIFFUSION_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
VAE_STEPS="${1:-3000}"
DIFFUSION_STEPS="${2:-3300}"

uv run synesthete train vae --preset cpu --seed 0 --run-name default-vae --max-steps "$VAE_STEPS" \
    --export checkpoints/
uv run synesthete train diffusion --preset cpu --seed 0 --run-name default-diffusion --max-steps "$DIFFUSION_STEPS" \
    --vae checkpoints/vae.pt --export checkpoints/
uv run synesthete eval --json runs/default-eval.json --plot runs/default-eval.png --overwrite

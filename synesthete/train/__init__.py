"""The trainers: ``train_vae`` (the Eye) and ``train_diffusion`` (the Brain), sharing ``train/loop.py``."""

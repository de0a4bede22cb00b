"""``python -m synesthete`` (also what ``torchrun -m synesthete`` runs)."""

from synesthete.cli import main

if __name__ == "__main__":
    main()

"""Synesthete: learn to turn music into video."""

__version__ = "0.1.0"

"""Audio: procedural music, frame-aligned features and decoding."""

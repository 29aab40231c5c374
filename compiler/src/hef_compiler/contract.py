"""The fixed inference contract (DESIGN.md) the compiled model must serve.

One window is 100 samples at 100 Hz of 9 channels (ax, ay, az, gx, gy, gz, mx, my, mz);
the model returns ``latent`` (64 floats) and ``motif_scores`` (NUM_MOTIFS floats).
"""

from __future__ import annotations

WINDOW = 100
CHANNELS = 9
LATENT = 64
INPUT_SHAPE = (1, WINDOW, CHANNELS)
LATENT_OUTPUT = "latent"
MOTIF_OUTPUT = "motif_scores"
CHANNEL_ORDER = ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")

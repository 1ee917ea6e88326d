"""Defaults shared by the Python API and the CLI, kept torch-free so ``--help`` stays instant.

The training defaults are the design of the built-in model, so ``atriumseg train DATA...`` with no
options trains that design. (The card's own field defaults describe the reference U-Net of the
product brief, one channel at width 64, and are used only when a card is built by hand.)
"""

BATCH_SIZE = 16  # slices per forward pass at inference

# The built-in model's design (see README, "The built-in model").
WIDTH = 32
DEPTH = 4
CONTEXT = 1
PLANE = "axial"
SPACING_MM = 1.25  # in-plane
SLICE_SPACING_MM = 1.25
PATCH = 128

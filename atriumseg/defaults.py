"""Defaults shared by the Python API and the CLI, kept torch-free so ``--help`` stays instant.

The model design's defaults are the built-in model's, :data:`atriumseg.models.card.BUILT_IN`, so
``atriumseg train DATA...`` with no options trains that design; the names below read it from there.
"""

from atriumseg.models.card import BUILT_IN

BATCH_SIZE = 16  # slices per forward pass at inference

WIDTH = BUILT_IN.architecture.width
DEPTH = BUILT_IN.architecture.depth
CONTEXT = BUILT_IN.preprocessing.context
PLANE = BUILT_IN.preprocessing.plane
SPACING_MM = BUILT_IN.preprocessing.spacing[0]  # in-plane
SLICE_SPACING_MM = BUILT_IN.preprocessing.slice_spacing
PATCH = 128  # training slice size; its crop, padded to the pooling grid, is BUILT_IN's min_slice_size

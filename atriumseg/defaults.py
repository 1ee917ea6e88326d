"""Defaults shared by the Python API and the CLI, kept torch-free so ``--help`` stays instant.

The model design's defaults are the built-in model's axial member's, :data:`atriumseg.models.card.BUILT_IN` (the one
place they are written); training's are the fields of
:class:`atriumseg.pipeline.training.config.TrainConfig`, whose design fields read ``BUILT_IN``, so
``atriumseg train DATA...`` with no options trains the built-in design.
"""

BATCH_SIZE = 16  # slices per forward pass at inference

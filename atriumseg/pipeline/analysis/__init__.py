"""What needs a mask, not a model: measurements, meshes, quality flags, agreement metrics."""

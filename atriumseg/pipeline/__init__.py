"""The stages of the work, one subpackage each: io, inference, analysis, batch, training."""

"""Axis-code helpers, now in :mod:`atriumseg.geometry`; kept for the callers that have not switched yet."""

from atriumseg.geometry import AXIS_UNIT, affine_with_axcodes, validate_axcodes

__all__ = ["AXIS_UNIT", "affine_with_axcodes", "validate_axcodes"]

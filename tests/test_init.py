"""``import atriumseg``: every public name resolves on first use, and importing the package loads no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import atriumseg


@pytest.mark.parametrize("name", atriumseg.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(atriumseg, name)
    assert value is not None and (name == "__version__" or value.__name__ == name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'segmnet'"):
        atriumseg.segmnet  # noqa: B018


@pytest.mark.slow
def test_importing_the_package_loads_neither_torch_nor_monai() -> None:
    code = "import sys, atriumseg; print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

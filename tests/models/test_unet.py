import pytest
import torch

from atriumseg.models.unet import UNet


def test_reference_network_has_7696193_parameters_and_keeps_the_slice_size() -> None:
    net = UNet(in_channels=1, width=64, depth=4)
    assert sum(p.numel() for p in net.parameters()) == 7_696_193
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 256, 256))
    assert out.shape == (1, 1, 256, 256)


@pytest.mark.parametrize(("width", "depth", "size"), [(8, 2, 18), (4, 3, 24), (2, 5, 32)])
def test_width_and_depth_are_configurable(width: int, depth: int, size: int) -> None:
    net = UNet(in_channels=3, width=width, depth=depth)
    assert net.divisor == 2 ** (depth - 1)
    assert net.outc.in_channels == width
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, size, size)
    assert not torch.allclose(out[0], out[1])


def test_blocks_are_the_classic_ones() -> None:
    net = UNet(width=16, depth=4)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert sum(1 for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)) == 3
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups) and len(ups) == 3
    assert all(c.kernel_size == (3, 3) for c in convs[:-1]) and convs[-1].kernel_size == (1, 1)


def test_invalid_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=1)

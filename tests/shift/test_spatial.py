import pytest
import torch

from autodsnn.shift import ConvShiftConv, SpatialShift, shift_offsets


def test_each_channel_moves_by_its_offset_with_zero_fill():
    c, h, w = 20, 7, 9
    x = torch.randn(2, c, h, w)
    out = SpatialShift(3)(x)
    groups = shift_offsets(c)
    assert sum(c1 - c0 for c0, c1, _, _ in groups) == c
    assert sorted((dy, dx) for _, _, dy, dx in groups) == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for c0, c1, dy, dx in groups:
        for ch in range(c0, c1):
            for y in range(h):
                for x_ in range(w):
                    sy, sx = y - dy, x_ - dx
                    expected = x[:, ch, sy, sx] if 0 <= sy < h and 0 <= sx < w else torch.zeros(2)
                    assert torch.equal(out[:, ch, y, x_], expected)


def test_leftover_channels_stay_in_the_centre():
    groups = shift_offsets(11)  # 9 groups of 1, 2 left over
    centre = [g for g in groups if g[2:] == (0, 0)][0]
    assert centre[1] - centre[0] == 3


def test_dilated_shift_and_gradient():
    x = torch.randn(1, 9, 6, 6, requires_grad=True)
    out = SpatialShift(3, dilation=2)(x)
    # group 0 has offset (-2, -2): out[y, x] = in[y + 2, x + 2], zeros in the last two rows/columns
    assert torch.equal(out[0, 0, :-2, :-2], x[0, 0, 2:, 2:])
    assert not out[0, 0, -2:, :].any() and not out[0, 0, :, -2:].any()
    out.sum().backward()
    # every input pixel that lands inside the output gets gradient 1, the rest 0
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}


def test_bad_kernel_size():
    with pytest.raises(ValueError, match="odd"):
        SpatialShift(2)


@pytest.mark.parametrize("stride,cin,cout", [(1, 16, 16), (2, 16, 32)])
def test_conv_shift_conv_block(stride, cin, cout):
    block = ConvShiftConv(cin, cout, stride=stride, expansion=3)
    assert block.conv1.out_channels == cout * 3
    out = block(torch.randn(2, cin, 8, 8))
    assert out.shape == (2, cout, 8 // stride, 8 // stride)
    assert (len(block.shortcut) > 0) == (stride != 1 or cin != cout)

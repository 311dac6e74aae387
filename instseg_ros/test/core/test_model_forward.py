"""CPU forward of every preset, DCNv2 against a float64 transcription of the reference kernel, FPN, maskiou."""

import math

import pytest
import torch
import torch.nn.functional as F

from instseg_ros.core.config import PRESETS, get_preset
from instseg_ros.core.models.yolact import Yolact, init_weights_
from instseg_ros.core.models.yolact.dcn import DCNv2
from instseg_ros.core.models.yolact.fpn import FPN
from instseg_ros.core.models.yolact.maskiou import MaskIoUNet

CELLS_128 = 32 * 32 // 4 + 8 * 8 + 4 * 4 + 2 * 2 + 1  # P3 16x16, P4 8, P5 4, P6 2, P7 1 -> 341


def build(name: str, seed: int = 0, **kw) -> Yolact:
    return init_weights_(Yolact(get_preset(name, **kw)), torch.Generator().manual_seed(seed)).eval()


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_cpu_forward_shapes_finite_deterministic(name):
    model = build(name)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out1 = model(x)
        out2 = model(x)
    p = CELLS_128 * model.cfg.num_anchors
    assert out1.loc.shape == (2, p, 4) and out1.conf.shape == (2, p, 81) and out1.coeffs.shape == (2, p, 32)
    assert out1.proto.shape == (2, 32, 32, 32) and out1.priors.shape == (p, 4) and out1.segm is None
    for a, b in zip(out1[:5], out2[:5]):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert torch.equal(a, b)
    assert out1.coeffs.abs().max() <= 1 and out1.proto.min() >= 0
    assert out1.conf.std() > 0  # raw logits, not a degenerate constant
    # the two images differ, so must their outputs
    assert not torch.equal(out1.conf[0], out1.conf[1])


def test_priors_cached_per_instance_and_follow_dtype():
    model = build('yolact_small', num_classes=3)
    with torch.no_grad():
        a = model(torch.zeros(1, 3, 64, 64)).priors
        b = model(torch.zeros(1, 3, 64, 64)).priors
        c = model.double()(torch.zeros(1, 3, 64, 64, dtype=torch.float64)).priors
    assert a is b
    assert c.dtype == torch.float64 and torch.allclose(c.float(), a)
    assert build('yolact_small', num_classes=3)._priors_cache == {}


def test_training_mode_returns_semantic_logits_and_grads():
    model = build('yolact_small', num_classes=4).train()
    out = model(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    assert out.segm.shape == (2, 3, 8, 8)  # P3 of a 64 input, C-1 = 3 channels
    (out.loc.sum() + out.conf.sum() + out.coeffs.sum() + out.proto.sum() + out.segm.sum()).backward()
    assert model.backbone.conv1.weight.grad is not None
    assert model.semantic_seg_conv.weight.grad.abs().sum() > 0


def test_rescore_maskiou():
    model = build('yolact_plus_resnet50')
    masks = torch.rand(3, 1, 138, 138, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        iou = model.rescore(masks)
        assert iou.shape == (3, 80) and (iou >= 0).all()
        assert model.rescore(masks[:0]).shape == (0, 80)
    with pytest.raises(RuntimeError, match='maskiou'):
        build('yolact_small').rescore(masks)


def test_maskiou_final_relu_and_global_max_by_hand():
    net = MaskIoUNet(num_classes=4).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.maskiou_net[10].bias.copy_(torch.tensor([-1.0, 0.5, 2.0]))
    out = net(torch.rand(2, 1, 63, 63, dtype=torch.float64))  # 63 -> 31 -> 15 -> 7 -> 3 -> 1
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.5, 2.0]] * 2, dtype=torch.float64))


def test_fpn_by_hand():
    fpn = FPN([1, 1, 1], num_features=1, num_downsample=2).double()
    with torch.no_grad():
        for p in fpn.parameters():
            p.zero_()
        for lat in fpn.lat_layers:
            lat.weight.fill_(1.0)
        for conv in list(fpn.pred_layers) + list(fpn.downsample_layers):
            conv.weight[0, 0, 1, 1] = 1.0  # centre tap only: identity
        for conv in fpn.downsample_layers:
            conv.bias.fill_(-1.0)
    c3 = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    c4 = torch.full((1, 1, 2, 2), 5.0, dtype=torch.float64)
    c5 = torch.full((1, 1, 1, 1), -2.0, dtype=torch.float64)
    p3, p4, p5, p6, p7 = fpn([c3, c4, c5])
    assert p3.shape[-2:] == (3, 3)  # upsampled to the exact lateral size (2 -> 3)
    assert p5.item() == 0.0  # ReLU(-2)
    # top-down carries the pre-ReLU sum: -2 + 5 = 3 into P4, then 3 + 0 into P3
    torch.testing.assert_close(p4, torch.full((1, 1, 2, 2), 3.0, dtype=torch.float64))
    torch.testing.assert_close(p3, torch.full((1, 1, 3, 3), 3.0, dtype=torch.float64))
    assert p6.item() == -1.0 and p7.item() == -2.0  # no ReLU on P6 / P7


# --- DCNv2 ------------------------------------------------------------------------------------------------

def _bilinear_ref(img: torch.Tensor, h: float, w: float) -> torch.Tensor:
    """Reference kernel sampling of img [C, H, W] at (h, w): zero unless -1 < h < H and -1 < w < W."""
    height, width = img.shape[-2:]
    if not (-1 < h < height and -1 < w < width):
        return img.new_zeros(img.shape[0])
    h0, w0 = math.floor(h), math.floor(w)
    lh, lw = h - h0, w - w0
    val = img.new_zeros(img.shape[0])
    for y, x, wt in ((h0, w0, (1 - lh) * (1 - lw)), (h0, w0 + 1, (1 - lh) * lw),
                     (h0 + 1, w0, lh * (1 - lw)), (h0 + 1, w0 + 1, lh * lw)):
        if 0 <= y < height and 0 <= x < width:
            val = val + wt * img[:, y, x]
    return val


def _dcn_ref(x, raw, weight, bias, stride, pad):
    """Modulated deformable conv from the raw conv_offset_mask output (channel 2k = dy, 2k+1 = dx, 18+k mask)."""
    _, ho, wo = raw.shape
    out = torch.zeros(weight.shape[0], ho, wo, dtype=x.dtype)
    for oy in range(ho):
        for ox in range(wo):
            acc = bias.clone()
            for i in range(3):
                for j in range(3):
                    k = i * 3 + j
                    dy, dx = raw[2 * k, oy, ox].item(), raw[2 * k + 1, oy, ox].item()
                    m = torch.sigmoid(raw[18 + k, oy, ox])
                    s = _bilinear_ref(x, oy * stride - pad + i + dy, ox * stride - pad + j + dx)
                    acc = acc + weight[:, :, i, j] @ (m * s)
            out[:, oy, ox] = acc
    return out


@pytest.mark.parametrize('stride', [1, 2])
def test_dcn_matches_float64_reference(stride):
    g = torch.Generator().manual_seed(4)
    dcn = DCNv2(2, 3, 3, stride=stride, padding=1).double()
    with torch.no_grad():
        dcn.weight.copy_(torch.randn(dcn.weight.shape, generator=g, dtype=torch.float64))
        dcn.bias.copy_(torch.randn(3, generator=g, dtype=torch.float64))
        dcn.conv_offset_mask.weight.copy_(torch.randn(27, 2, 3, 3, generator=g, dtype=torch.float64) * 0.6)
        dcn.conv_offset_mask.bias.copy_(torch.randn(27, generator=g, dtype=torch.float64))
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        raw = dcn.conv_offset_mask(x)[0]
        got = dcn(x)[0]
    assert raw[:18].abs().max() > 2  # offsets large enough to reach the borders
    torch.testing.assert_close(got, _dcn_ref(x[0], raw, dcn.weight, dcn.bias, stride, 1), atol=1e-10, rtol=0)


def test_dcn_half_pixel_dx_by_hand():
    dcn = DCNv2(1, 1, 3).double()
    with torch.no_grad():
        dcn.weight.zero_()
        dcn.weight[0, 0, 1, 1] = 1.0
        dcn.conv_offset_mask.bias[1:18:2] = 0.5  # dx of every tap; dy = 0; mask logits 0 -> 0.5
    x = torch.tensor([[[[1.0, 2.0, 4.0]]]], dtype=torch.float64)
    # centre tap samples x at column c + 0.5: (1+2)/2, (2+4)/2, 4/2 (right neighbour outside), times mask 0.5
    torch.testing.assert_close(dcn(x), torch.tensor([[[[0.75, 1.5, 1.0]]]], dtype=torch.float64))


def test_dcn_zero_offsets_is_half_conv_plus_bias():
    g = torch.Generator().manual_seed(5)
    dcn = DCNv2(4, 6, 3, stride=2)
    with torch.no_grad():
        dcn.bias.copy_(torch.randn(6, generator=g))
    x = torch.randn(2, 4, 9, 7, generator=g)
    with torch.no_grad():
        expected = 0.5 * F.conv2d(x, dcn.weight, stride=2, padding=1) + dcn.bias[:, None, None]
        torch.testing.assert_close(dcn(x), expected, atol=1e-5, rtol=1e-5)
        offset, mask = dcn.split_offset_mask(x)
    assert offset.shape == (2, 18, 5, 4) and mask.shape == (2, 9, 5, 4)
    assert torch.all(mask == 0.5) and torch.all(offset == 0)

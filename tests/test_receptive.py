"""gradcam_core.receptive: theoretical receptive fields worked by hand, and checked against gradients."""

import pytest
import torch
from conftest import assert_no_hooks
from torch import nn

import gradcam_core as gc
from gradcam_core.receptive import effective_receptive_field, receptive_field


def small_net(linear: bool = False) -> nn.Sequential:
    """conv 3x3 -> conv 3x3 stride 2 -> pool 2 -> conv 3x3 dilation 2, all padded. ``linear``: average
    pooling and nothing else, so every gradient is nonzero; otherwise max pooling and ReLUs between."""
    torch.manual_seed(5)
    convs = [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1),
             nn.Conv2d(4, 2, 3, padding=2, dilation=2)]
    if linear:
        return nn.Sequential(convs[0], convs[1], nn.AvgPool2d(2), convs[2]).eval()
    return nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU(), nn.MaxPool2d(2), convs[2]).eval()


def test_a_small_net_by_hand():
    # conv1: r 3, j 1, start -1; conv2 (s 2, p 1): r 3 + 2 = 5, j 2, start -2;
    # pool (k 2, s 2): r 5 + 1 * 2 = 7, j 4, start -2; conv3 (d 2, p 2): r 7 + 2 * 2 * 4 = 23, j 4, start -2 - 8
    expected = {"0": (3, 1, -1), "2": (5, 2, -2), "4": (7, 4, -2), "5": (23, 4, -10)}
    model = small_net()
    for layer, (size, jump, start) in expected.items():
        rf = receptive_field(model, layer, (32, 32))
        assert (rf.size, rf.jump, rf.start) == (size, jump, (start, start)), layer
    assert receptive_field(model, "5", (32, 32)).layer_size == (8, 8)
    # average pooling and no ReLUs: the same fields
    assert receptive_field(small_net(linear=True), "3", (32, 32)).size == 23


def test_resnet34_by_hand(resnet34):
    # conv1 7 (j 2), max-pool +2*2 = 11 (j 4); layer1: six 3x3 convs, +6*2*4 = 59; layer2: +8 (stride 2), then seven
    # convs at j 8: 179; layer3: +16, eleven at j 16: 547; layer4: +32, five at j 32: 899
    expected = {"layer1": (59, 4), "layer2": (179, 8), "layer3": (547, 16), "layer4": (899, 32), "layer1.0": (27, 4)}
    for layer, (size, jump) in expected.items():
        rf = receptive_field(resnet34.module, layer, (224, 224))
        assert (rf.size, rf.jump) == (size, jump), layer
        assert rf.start == (-(size - 1) // 2, -(size - 1) // 2)  # centred on the cell, padding included


def test_the_shapes_networks_by_hand():
    clf = gc.load_model("shapes_gap", pretrained=False)
    sizes = {layer: receptive_field(clf.module, layer, (64, 64)).size for layer in clf.stages}
    # layer1: 3 (j 2); layer2: conv +4, pool 2 +2 = 9 (j 4); layer3: +8 +4 = 21 (j 8); layer4: conv +16, 3x3 average +16
    assert sizes == {"layer1": 3, "layer2": 9, "layer3": 21, "layer4": 53}


def test_regions_are_clipped_to_the_picture(resnet34):
    rf = receptive_field(resnet34.module, "layer1", (224, 224))
    assert rf.region(0, 0) == (0, 0, 30, 30)
    assert rf.region(10, 20) == (-29 + 80, -29 + 40, -29 + 80 + 59, -29 + 40 + 59)
    assert rf.region(55, 55) == (191, 191, 224, 224)
    with pytest.raises(ValueError, match="outside the layer's 56x56 cells"):
        rf.region(56, 0)


def test_cell_at_inverts_the_region_centres(resnet34):
    rf = receptive_field(resnet34.module, "layer2", (224, 224))
    for i, j in [(0, 0), (5, 17), (27, 27)]:
        y, x = rf.start[0] + i * rf.jump + (rf.size - 1) / 2, rf.start[1] + j * rf.jump + (rf.size - 1) / 2
        assert rf.cell_at(y, x) == (i, j)


def _support(model: nn.Module, layer: str, size: int, cell: tuple[int, int], x: torch.Tensor | None = None):
    x = torch.randn(1, 3, size, size) if x is None else x
    return effective_receptive_field(model, x, layer, cell) > 0


def _box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows, columns = mask.nonzero(as_tuple=True)
    return (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)


def test_without_relus_the_input_gradient_spans_the_field_exactly():
    """A linear net's gradient is its weights: nonzero from one edge of the field to the other. (Not on
    every pixel inside: the dilated convolution skips a pixel between its taps' fields.)"""
    model = small_net(linear=True)
    rf = receptive_field(model, "3", (32, 32))
    for cell in [(4, 4), (0, 0), (7, 3)]:
        support = _support(model, "3", 32, cell)
        assert _box(support) == rf.region(*cell), cell
    assert int(_support(model, "3", 32, (4, 4)).sum()) == 21 * 21  # 23 a side less the two skipped rows/columns


@pytest.mark.parametrize("fixture, layer", [("resnet34", "layer2"), ("efficientnet", "layer2")])
def test_on_the_real_models_the_gradient_stays_inside_the_field(fixture, layer, request):
    clf = request.getfixturevalue(fixture)
    rf = receptive_field(clf.module, layer, (96, 96))
    cell = (rf.layer_size[0] // 2, rf.layer_size[1] // 2)
    torch.manual_seed(0)
    support = _support(clf.module, layer, 96, cell)
    assert support.any()
    x0, y0, x1, y1 = rf.region(*cell)
    bx0, by0, bx1, by1 = _box(support)
    assert x0 <= bx0 and y0 <= by0 and bx1 <= x1 and by1 <= y1


def test_efficientnet_same_padding_is_followed(efficientnet):
    """TF "same" padding adds an explicit pad before each stride-2 convolution: the field is still square."""
    rf = receptive_field(efficientnet.module, "layer4", (224, 224))
    assert rf.jump == 32 and rf.layer_size == (7, 7) and rf.size > 224


def test_layers_after_global_pooling_are_refused_with_the_operation(resnet34):
    with pytest.raises(ValueError, match="through Mean: it does not keep cells in place"):
        receptive_field(resnet34.module, "avgpool", (64, 64))
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        receptive_field(resnet34.module, "nope", (64, 64))


def test_the_model_is_left_as_it_was():
    model = small_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model, "5", (16, 16))
    effective_receptive_field(model, torch.randn(1, 3, 16, 16), "5", (1, 1))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert_no_hooks(model)


def test_the_effective_field_peaks_near_the_cell_and_refuses_cells_outside(resnet34):
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    erf = effective_receptive_field(resnet34.module, x, "layer1", (12, 12))
    assert erf.shape == (96, 96)
    peak_y, peak_x = divmod(int(erf.argmax()), 96)
    assert abs(peak_y - 48) <= 12 and abs(peak_x - 48) <= 12  # cell 12 of 24 at stride 4 sits at pixel ~48
    with pytest.raises(ValueError, match="outside 'layer1'"):
        effective_receptive_field(resnet34.module, x, "layer1", (24, 0))


def test_a_transformer_gets_a_sentence_instead_of_a_box_and_keeps_its_effective_field():
    vit = gc.load_model("shapes_vit", pretrained=False).module
    with pytest.raises(ValueError, match="self-attention lets each token read every patch"):
        receptive_field(vit, "blocks.0.norm1", (64, 64))
    field = effective_receptive_field(vit, torch.rand(1, 3, 64, 64), "blocks.3.norm1", (4, 4))
    assert field.shape == (64, 64) and float(field.sum()) > 0  # a layer norm's channel sum would give zeros
    assert float(field[:16, :16].sum()) > 0  # token (4, 4) covers pixels 32..39, yet the far corner moves it

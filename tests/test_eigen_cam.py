"""gradcam_core.explainers.eigen_cam: Eigen-CAM, the first principal component of a layer.

The reference is computed here with ``torch.linalg.svd``: the layer's ``h * w`` positions are
points in ``K`` dimensions, centred; the map is their projection on the first right singular
vector, its sign chosen so that the map correlates positively with the channel-summed activation,
then ReLU'd. No class and no gradient enter it.
"""

from __future__ import annotations

import torch
from conftest import assert_no_hooks, count_calls, make_tiny
from torch import nn

import gradcam_core as gc


def reference_eigen_cam(a: torch.Tensor) -> torch.Tensor:
    """``(N, K, h, w)`` -> ``(N, h, w)``, in float64."""
    maps = []
    for sample in a.double():
        k, h, w = sample.shape
        points = sample.reshape(k, h * w).T  # (h*w, K)
        centred = points - points.mean(dim=0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        projection = centred @ vh[0]
        summed = points.sum(dim=1)
        correlation = torch.corrcoef(torch.stack([projection, summed]))[0, 1]
        if correlation < 0:
            projection = -projection
        maps.append(projection.clamp(min=0).reshape(h, w))
    return torch.stack(maps)


# --------------------------------------------------------------------------------------------
# By hand
# --------------------------------------------------------------------------------------------


def test_eigen_cam_by_hand_on_rank_one_activations():
    """A = u_k * s_ij + c_k: centred, every position is (s_ij - mean s) u, so the first right
    singular vector is +-u/|u| and the projection is +-(s_ij - mean s)|u|. With u = (3, 4) (|u| = 5)
    and s = [[0, 1], [2, 5]] (mean 2): projection = +-5 * [[-2, -1], [0, 3]]. The channel sum is
    7 s + const, which rises with s, so the sign is +: map = ReLU(5 [[-2, -1], [0, 3]]) = [[0, 0], [0, 15]].
    """

    class Given(nn.Module):  # a "layer" that outputs the given activations, then GAP + linear
        def __init__(self):
            super().__init__()
            self.layer = nn.Identity()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            return self.fc(self.layer(x).mean(dim=(2, 3)))

    s = torch.tensor([[0.0, 1.0], [2.0, 5.0]], dtype=torch.float64)
    u = torch.tensor([3.0, 4.0], dtype=torch.float64)
    a = u[:, None, None] * s + torch.tensor([1.0, -2.0], dtype=torch.float64)[:, None, None]
    model = Given().double().eval()
    r = gc.EigenCAM(model, ["layer"])(a[None], target=0)
    expected = torch.tensor([[[0.0, 0.0], [0.0, 15.0]]], dtype=torch.float64)
    torch.testing.assert_close(r.maps["layer"], expected, rtol=1e-12, atol=1e-12)
    # -A flips the channel sum too, so the sign follows: the map is ReLU(5 * [[2, 1], [0, -3]])
    r = gc.EigenCAM(model, ["layer"])(-a[None], target=0)
    torch.testing.assert_close(r.maps["layer"], torch.tensor([[[10.0, 5.0], [0.0, 0.0]]], dtype=torch.float64))
    assert r.weights == {}


# --------------------------------------------------------------------------------------------
# Against torch.linalg.svd
# --------------------------------------------------------------------------------------------


def test_eigen_cam_equals_the_svd_reference_on_resnet34(resnet34, small_batch):
    layers = ["layer1", "layer2", "layer3"]
    r = gc.EigenCAM(resnet34.module, layers)(small_batch, target=[1, 2, 3])
    for layer in layers:
        expected = reference_eigen_cam(r.activations[layer]).float()
        scale = expected.max()
        assert scale > 0
        torch.testing.assert_close(r.maps[layer], expected, rtol=1e-5, atol=1e-6 * scale)
        assert r.maps[layer].shape == r.activations[layer].shape[:1] + r.activations[layer].shape[2:]


def test_eigen_cam_equals_the_svd_reference_on_shapes_gap(shapes_gap, shapes_images):
    x, labels = shapes_images
    r = gc.EigenCAM(shapes_gap.module, shapes_gap.stages)(x, target=labels)
    for layer in shapes_gap.stages:
        expected = reference_eigen_cam(r.activations[layer]).float()
        torch.testing.assert_close(r.maps[layer], expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_the_map_correlates_positively_with_the_channel_sum(resnet34, small_batch):
    r = gc.EigenCAM(resnet34.module, ["layer2"])(small_batch)
    a = r.activations["layer2"].double()
    summed = a.sum(dim=1).flatten(1)
    for i in range(3):
        m = r.maps["layer2"][i].double().flatten()
        assert m.max() > 0
        assert torch.corrcoef(torch.stack([m, summed[i]]))[0, 1] > 0


# --------------------------------------------------------------------------------------------
# No class, no gradient, the same every time
# --------------------------------------------------------------------------------------------


def test_the_same_map_on_repeated_runs_and_for_every_target(resnet34, small_batch):
    explainer = gc.EigenCAM(resnet34.module, ["layer3", "layer4"])
    first = explainer(small_batch, target=0)
    again = explainer(small_batch, target=0)
    other = explainer(small_batch, target=[999, 17, 4])
    top1 = explainer(small_batch)
    for layer in ("layer3", "layer4"):
        assert torch.equal(again.maps[layer], first.maps[layer])
        assert torch.equal(other.maps[layer], first.maps[layer])
        assert torch.equal(top1.maps[layer], first.maps[layer])
    assert other.targets.tolist() == [999, 17, 4]  # target still sets Result.targets
    assert torch.equal(top1.targets, top1.logits.argmax(dim=1))


def test_batch_item_equals_single_image(resnet34, small_batch):
    explainer = gc.EigenCAM(resnet34.module, ["layer3"])
    batch = explainer(small_batch)
    for i in range(3):
        alone = explainer(small_batch[i : i + 1])
        scale = batch.maps["layer3"][i].max()
        torch.testing.assert_close(batch.maps["layer3"][i], alone.maps["layer3"][0], rtol=1e-4, atol=1e-5 * scale)


def test_eigen_cam_takes_no_gradient(tiny, tiny_input, monkeypatch):
    grads = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real(*a, **k))
    with count_calls(tiny) as counts:
        r = gc.EigenCAM(tiny, ["conv2"])(tiny_input, target=1)
    assert grads == [] and counts == [1]
    assert r.maps["conv2"].shape == (3, 8, 8)
    assert_no_hooks(tiny)


def test_a_constant_layer_gives_a_zero_map_not_nan():
    model = make_tiny()
    with torch.no_grad():
        model.conv2.weight.zero_()  # conv2's output is its bias everywhere: nothing varies
    r = gc.EigenCAM(model, ["conv2"])(torch.randn(2, 3, 8, 8), target=0)
    assert torch.isfinite(r.maps["conv2"]).all()
    # centred, the points are 0 up to the float32 rounding of their mean (~1e-8 here)
    scale = r.activations["conv2"].abs().max()
    torch.testing.assert_close(r.maps["conv2"], torch.zeros(2, 8, 8), rtol=0, atol=1e-6 * scale)

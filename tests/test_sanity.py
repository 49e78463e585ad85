"""gradcam_core.sanity: the model randomization tests of Adebayo et al. (NeurIPS 2018).

The randomized models are deep copies: the caller's model (shared by the dashboard) must come
out exactly as it went in, its weights, buffers, gradients, training flags and hooks, whether
the call returns or raises. The new weights come from ``seed`` alone, without touching torch's
global random state.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import (
    TINY_OPTIONS,
    assert_no_hooks,
    assert_same_state,
    make_tiny,
    snapshot,
)
from scipy import stats

import gradcam_core as gc
from gradcam_core import sanity

#: TinyCNN's stages from the top (the classifier) down.
STAGES = ["fc", "conv2", "conv1"]
EXPLAIN_LAYER = "relu2"  # 8x8 on TinyCNN's 8x8 inputs, followed by GAP and fc: CAM applies
TARGETS = [0, 3, 1]
METHODS = ["grad_cam", "guided_backprop", "cam", "occlusion"]
RANDOMIZATIONS = {"cascading": sanity.cascading_randomization, "independent": sanity.independent_randomization}


def own_map(model, x, targets, method: str) -> torch.Tensor:
    """The method's map ``(N, H, W)`` from its own class, as the randomization tests show it:
    layer maps upsampled to the input, pixel-space pictures summed over colours."""
    if method == "grad_cam":
        m = gc.GradCAM(model, [EXPLAIN_LAYER])(x, targets).maps[EXPLAIN_LAYER]
    elif method == "cam":
        m = gc.CAM(model, EXPLAIN_LAYER, "fc")(x, targets).maps[EXPLAIN_LAYER]
    elif method == "guided_backprop":
        m = gc.GuidedBackprop(model)(x, targets).sum(dim=1)
    elif method == "occlusion":
        m = gc.Occlusion(model, **TINY_OPTIONS["occlusion"])(x, targets)
    else:
        raise AssertionError(method)
    return gc.upsample(m, tuple(x.shape[-2:]))


def randomize(kind, model, x, method, seed=10, **kwargs):
    # not seed 0 by default: make_tiny seeds 0 before drawing conv1, which seed 0 would draw again
    return RANDOMIZATIONS[kind](model, x, TARGETS, method, STAGES, EXPLAIN_LAYER, seed=seed,
                                options=TINY_OPTIONS.get(method), **kwargs)


def stage_of(name: str) -> str:
    return name.split(".")[0]


# --------------------------------------------------------------------------------------------
# similarity
# --------------------------------------------------------------------------------------------


def smooth_map(seed: int, side: int = 32) -> torch.Tensor:
    """A non-constant map with some structure (a few Gaussian bumps), so HOG has edges to see."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                            indexing="ij")
    m = torch.zeros(side, side, dtype=torch.float64)
    for _ in range(3):
        cy, cx = (torch.rand(2, generator=g, dtype=torch.float64) * side).tolist()
        m += torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 40.0)
    return m + 0.05 * torch.rand(side, side, generator=g, dtype=torch.float64)


def test_identical_maps_have_every_similarity_one():
    m = smooth_map(0)
    s = sanity.similarity(m, m.clone())
    assert set(s) == set(sanity.MEASURES) == {"spearman", "spearman_abs", "ssim", "hog"}
    assert s == pytest.approx({"spearman": 1.0, "spearman_abs": 1.0, "ssim": 1.0, "hog": 1.0})


def test_similarity_ignores_a_positive_scale_and_shift():
    # ranks are unchanged; SSIM and HOG see both maps min-max scaled to [0, 1]
    m = smooth_map(1)
    s = sanity.similarity(m, 3.0 * m + 2.0)
    assert s == pytest.approx({"spearman": 1.0, "spearman_abs": 1.0, "ssim": 1.0, "hog": 1.0})


def test_spearman_by_hand_and_against_scipy():
    # [[1, 2], [3, 4]] against [[1, 3], [2, 4]]: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    s = sanity.similarity(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).repeat(4, 4),
                          torch.tensor([[1.0, 3.0], [2.0, 4.0]]).repeat(4, 4))
    assert s["spearman"] == pytest.approx(0.8)
    a, b = smooth_map(2), smooth_map(3)
    s = sanity.similarity(a, b)
    assert s["spearman"] == pytest.approx(stats.spearmanr(a.flatten(), b.flatten()).statistic)
    assert s["spearman_abs"] == pytest.approx(s["spearman"])  # both maps are positive


def test_the_absolute_spearman_forgets_the_sign():
    m = smooth_map(4) - 0.5  # both signs
    s = sanity.similarity(m, -m)
    assert s["spearman"] == pytest.approx(-1.0)
    assert s["spearman_abs"] == pytest.approx(1.0)
    assert s["spearman_abs"] == pytest.approx(stats.spearmanr(m.abs().flatten(), m.abs().flatten()).statistic)


def test_unrelated_maps_are_not_similar():
    a, b = smooth_map(5), smooth_map(6)
    s = sanity.similarity(a, b)
    for key in sanity.MEASURES:
        assert -1.0 <= s[key] < 0.5, (key, s[key])
    assert sanity.similarity(b, a) == pytest.approx(s)  # symmetric


def test_a_constant_map_has_no_rank_correlation_and_no_hog_correlation():
    s = sanity.similarity(torch.zeros(32, 32), smooth_map(7))
    assert math.isnan(s["spearman"]) and math.isnan(s["spearman_abs"]) and math.isnan(s["hog"])
    assert not math.isnan(s["ssim"])


def test_similarity_refuses_maps_of_different_shapes():
    with pytest.raises(ValueError, match="one shape"):
        sanity.similarity(torch.zeros(8, 8), torch.zeros(8, 9))
    with pytest.raises(ValueError):
        sanity.similarity(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))


# --------------------------------------------------------------------------------------------
# randomized_copy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stages", [["fc"], ["conv1"], ["fc", "conv2"], ["conv2", "bn", "fc"]])
def test_randomized_copy_changes_exactly_the_named_stages(stages):
    model = make_tiny()
    before = snapshot(model)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    # not seed 0: make_tiny draws conv1 right after torch.manual_seed(0), so seed 0 would draw
    # conv1's own weights again
    twin = sanity.randomized_copy(model, stages, seed=10)
    assert twin is not model and not twin.training
    assert_same_state(before, model)
    new = twin.state_dict()
    assert new.keys() == original.keys()
    for name, value in original.items():
        if stage_of(name) in stages and value.is_floating_point():
            assert not torch.equal(new[name], value), f"{name} was not re-initialized"
        else:
            assert torch.equal(new[name], value), f"{name} changed though {stage_of(name)} was not named"


def test_batch_norm_is_reset_to_its_initial_state():
    twin = sanity.randomized_copy(make_tiny(), ["bn"], seed=0)
    assert torch.equal(twin.bn.running_mean, torch.zeros(6))
    assert torch.equal(twin.bn.running_var, torch.ones(6))
    assert torch.equal(twin.bn.weight, torch.ones(6)) and torch.equal(twin.bn.bias, torch.zeros(6))


def test_randomized_copy_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    model = make_tiny()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = sanity.randomized_copy(model, ["fc", "conv1"], seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # another global state: the same copy
    b = sanity.randomized_copy(model, ["fc", "conv1"], seed=5)
    c = sanity.randomized_copy(model, ["fc", "conv1"], seed=6)
    for name, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[name], value), name
    assert not torch.equal(c.fc.weight, a.fc.weight) and not torch.equal(c.conv1.weight, a.conv1.weight)


def test_a_randomized_copy_of_a_model_in_training_mode_leaves_its_flags():
    model = make_tiny().train()
    model.bn.eval()
    before = snapshot(model)
    twin = sanity.randomized_copy(model, ["fc"], seed=0)
    assert not any(m.training for m in twin.modules())
    assert_same_state(before, model)


# --------------------------------------------------------------------------------------------
# cascading and independent randomization
# --------------------------------------------------------------------------------------------


def test_steps_are_named_after_what_is_randomized(tiny, tiny_input):
    cascading = randomize("cascading", tiny, tiny_input, "grad_cam")
    independent = randomize("independent", tiny, tiny_input, "grad_cam")
    assert cascading.steps == ["original", "fc", "fc + conv2", "fc + conv2 + conv1"]
    assert independent.steps == ["original", "fc", "conv2", "conv1"]
    for r in (cascading, independent):
        assert r.method == "grad_cam"
        assert len(r.maps) == 4 and all(m.shape == (3, 8, 8) for m in r.maps)
        assert set(r.similarity) == set(sanity.MEASURES)
        for key, values in r.similarity.items():
            assert len(values) == 4
            assert values[0] == pytest.approx(1.0), key  # the original against itself


@pytest.mark.parametrize("kind", list(RANDOMIZATIONS))
@pytest.mark.parametrize("method", METHODS)
def test_each_map_is_the_methods_own_map_on_that_randomized_copy(kind, method, tiny, tiny_input):
    r = randomize(kind, tiny, tiny_input, method, seed=3)
    chosen = [STAGES[:k] for k in range(1, 4)] if kind == "cascading" else [[s] for s in STAGES]
    models = [tiny] + [sanity.randomized_copy(tiny, stages, seed=3) for stages in chosen]
    for step, (model, got) in enumerate(zip(models, r.maps)):
        expected = own_map(model, tiny_input, TARGETS, method)
        scale = max(float(expected.abs().max()), 1e-12)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * scale, msg=f"step {r.steps[step]}")
    assert not torch.allclose(r.maps[1], r.maps[0])  # randomizing the classifier changes the map


def test_similarity_is_the_mean_over_the_images(tiny, tiny_input):
    r = randomize("cascading", tiny, tiny_input, "guided_backprop")
    for step, m in enumerate(r.maps):
        for key in sanity.MEASURES:
            each = [sanity.similarity(r.maps[0][i], m[i])[key] for i in range(3)]
            assert r.similarity[key][step] == pytest.approx(float(np.nanmean(each))), (key, step)


def test_the_target_is_resolved_on_the_trained_model_and_kept(tiny, tiny_input):
    with torch.no_grad():
        top = tiny(tiny_input).argmax(dim=1).tolist()
    implicit = sanity.cascading_randomization(tiny, tiny_input, None, "grad_cam", STAGES, EXPLAIN_LAYER)
    explicit = sanity.cascading_randomization(tiny, tiny_input, top, "grad_cam", STAGES, EXPLAIN_LAYER)
    for a, b in zip(implicit.maps, explicit.maps):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", list(RANDOMIZATIONS))
def test_randomization_is_deterministic_for_a_seed_and_differs_for_another(kind, tiny, tiny_input):
    torch.manual_seed(1)
    a = randomize(kind, tiny, tiny_input, "grad_cam", seed=10)
    torch.manual_seed(2)  # the global state does not matter
    b = randomize(kind, tiny, tiny_input, "grad_cam", seed=10)
    c = randomize(kind, tiny, tiny_input, "grad_cam", seed=11)
    assert all(torch.equal(x, y) for x, y in zip(a.maps, b.maps))
    assert a.similarity == b.similarity
    assert torch.equal(c.maps[0], a.maps[0])  # the original is the original
    assert all(not torch.equal(x, y) for x, y in zip(a.maps[1:], c.maps[1:]))


@pytest.mark.parametrize("kind", list(RANDOMIZATIONS))
def test_randomization_leaves_the_global_rng_state_alone(kind, tiny, tiny_input):
    torch.manual_seed(7)
    state = torch.get_rng_state()
    randomize(kind, tiny, tiny_input, "grad_cam")
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("kind", list(RANDOMIZATIONS))
@pytest.mark.parametrize("method", METHODS)
def test_randomization_never_changes_the_callers_model(kind, method, tiny_input):
    model = make_tiny().train()  # a mixture of flags, each to be found as it was
    model.relu1.eval()
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    before = snapshot(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    randomize(kind, model, tiny_input, method)
    assert_same_state(before, model)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert_no_hooks(model)


def test_progress_is_called_after_each_map(tiny, tiny_input):
    calls = []
    randomize("independent", tiny, tiny_input, "grad_cam", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("kind", list(RANDOMIZATIONS))
@pytest.mark.parametrize("fail_at", [1, 3])
def test_a_progress_callback_that_raises_cancels_and_leaves_the_model_clean(kind, fail_at, tiny_input):
    model = make_tiny()
    before = snapshot(model)

    def progress(done, total):
        if done == fail_at:
            raise KeyboardInterrupt("stop")  # what a cancel button might raise

    with pytest.raises(KeyboardInterrupt, match="stop"):
        randomize(kind, model, tiny_input, "guided_backprop", progress=progress)
    assert_no_hooks(model)
    assert_same_state(before, model)
    # and the model still explains as before
    torch.testing.assert_close(own_map(model, tiny_input, TARGETS, "guided_backprop"),
                               own_map(make_tiny(), tiny_input, TARGETS, "guided_backprop"))


def test_randomization_needs_a_layer(tiny, tiny_input):
    for kind in RANDOMIZATIONS.values():
        with pytest.raises(ValueError, match="at least one layer"):
            kind(tiny, tiny_input, 0, "grad_cam", [], EXPLAIN_LAYER)


# --------------------------------------------------------------------------------------------
# The paper's finding, on the shapes network
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_guided_backprop_barely_notices_what_changes_grad_cam(shapes_gap, shapes_images, seed):
    """Adebayo et al.'s finding: with its classifier and last stage re-initialized, guided
    backpropagation still draws much the same picture (an edge detector), where Grad-CAM's map
    is another one. On four shapes pictures and three seeds the guided maps kept every similarity
    above 0.64, Grad-CAM's stayed below 0.44, so a margin of 0.2 is safe."""
    images, labels = shapes_images
    model = shapes_gap.module
    before = snapshot(model)
    layers = ["fc", "layer4"]
    guided = sanity.cascading_randomization(model, images, labels, "guided_backprop", layers, "layer4", seed=seed)
    grad_cam = sanity.cascading_randomization(model, images, labels, "grad_cam", layers, "layer4", seed=seed)
    assert guided.steps == grad_cam.steps == ["original", "fc", "fc + layer4"]
    for key in sanity.MEASURES:
        assert guided.similarity[key][-1] > grad_cam.similarity[key][-1] + 0.2, (
            key, guided.similarity[key], grad_cam.similarity[key])
    assert_same_state(before, model)
    assert_no_hooks(model)

"""gradcam_core.explainers.explain and .registry: every method in one table, many from one pass.

Also the promises every registered method makes, checked here for all of ``gc.METHODS`` at once
(tests/test_hooks.py checks them for the first explainers): a batch gives what each image alone
gives, no hook outlives a call, the model is left as it was (cancelled, failed or not), results
are detached, and a frozen model, a model in training mode or a call inside ``torch.no_grad()``
change nothing.
"""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import (
    METHOD_NAMES,
    SLOW_METHOD_NAMES,
    TINY_OPTIONS,
    assert_no_hooks,
    assert_same_state,
    build_method,
    count_calls,
    make_tiny,
    make_tiny_vit,
    result_tensors,
    snapshot,
)

import gradcam_core as gc
from gradcam_core.explainers import Explainer
from gradcam_core.hooks import model_lock

LAYERS = ["conv2", "relu2"]  # CAM explains the last, relu2, which GAP and fc follow
#: name -> (class, slow, class-specific, layered, stochastic): what each registry entry must say.
EXPECTED = {
    "cam": (gc.CAM, False, True, True, False),
    "grad_cam": (gc.GradCAM, False, True, True, False),
    "grad_cam_plus_plus": (gc.GradCAMPlusPlus, False, True, True, False),
    "xgrad_cam": (gc.XGradCAM, False, True, True, False),
    "layer_cam": (gc.LayerCAM, False, True, True, False),
    "hires_cam": (gc.HiResCAM, False, True, True, False),
    "score_cam": (gc.ScoreCAM, True, True, True, False),
    "ablation_cam": (gc.AblationCAM, True, True, True, False),
    "eigen_cam": (gc.EigenCAM, False, False, True, False),
    "saliency": (gc.Saliency, False, True, False, False),
    "guided_backprop": (gc.GuidedBackprop, False, True, False, False),
    "deconvnet": (gc.Deconvnet, False, True, False, False),
    "guided_grad_cam": (gc.GuidedGradCAM, False, True, True, False),
    "occlusion": (gc.Occlusion, True, True, False, False),
    "ss_cam": (gc.SSCAM, True, True, True, True),
    "is_cam": (gc.ISCAM, True, True, True, False),
    "input_x_gradient": (gc.InputXGradient, False, True, False, False),
    "integrated_gradients": (gc.IntegratedGradients, True, True, False, False),
    "smooth_grad": (gc.SmoothGrad, True, True, False, True),
    "gradient_shap": (gc.GradientShap, True, True, False, True),
    "smooth_grad_cam_pp": (gc.SmoothGradCAMPlusPlus, True, True, True, True),
    "finer_cam": (gc.FinerCAM, False, True, True, False),
    "contrastive_grad_cam": (gc.ContrastiveGradCAM, False, True, True, False),
    "rise": (gc.RISE, True, True, False, True),
    "lime": (gc.LIME, True, True, False, True),
    "kernel_shap": (gc.KernelSHAP, True, True, False, True),
    "grad_cam_element_wise": (gc.GradCAMElementWise, False, True, True, False),
    "eigen_grad_cam": (gc.EigenGradCAM, False, True, True, False),
    "shapley_cam": (gc.ShapleyCAM, False, True, True, False),
    "full_grad": (gc.FullGrad, False, True, False, False),
    "kpca_cam": (gc.KPCACAM, False, False, True, False),
    "fem": (gc.FEM, False, False, True, False),
    "random_cam": (gc.RandomCAM, False, False, True, True),
    "lrp": (gc.LRP, False, True, False, False),
    "extremal_perturbation": (gc.ExtremalPerturbation, True, True, False, False),
    "deep_lift": (gc.DeepLift, False, True, False, False),
}
ALL_NAMES = list(EXPECTED)
#: The methods of the first release; the pass counts below are worked out for them (each later
#: method counts its own passes in its own test file).
FIRST_NAMES = [
    "cam", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam", "hires_cam", "score_cam", "ablation_cam",
    "eigen_cam", "saliency", "guided_backprop", "deconvnet", "guided_grad_cam", "occlusion",
]
#: One forward and one backward pass between them.
GRADIENT_NAMES = [
    "cam",
    "grad_cam",
    "grad_cam_plus_plus",
    "xgrad_cam",
    "layer_cam",
    "hires_cam",
    "eigen_cam",
    "saliency",
    "input_x_gradient",
    "grad_cam_element_wise",
    "eigen_grad_cam",
    "kpca_cam",
    "fem",
    "random_cam",
]
INPUT_NAMES = [name for name, (_, _, _, layered, _) in EXPECTED.items() if not layered]


def call(explainer, x, target):
    return result_tensors(explainer(x, target))


def assert_same_tensors(got: dict, expected: dict, exact: bool = True) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        if exact:
            assert torch.equal(got[name], expected[name]), name
        else:
            scale = expected[name].abs().max() if expected[name].is_floating_point() else 0
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_the_registry_lists_every_method():
    assert sorted(gc.METHODS) == sorted(ALL_NAMES + TRANSFORMER_NAMES)
    assert METHOD_NAMES == list(gc.METHODS)


def test_methods_for_offers_each_network_the_methods_of_its_family(tiny, tiny_vit):
    assert list(gc.methods_for(tiny)) == [n for n in gc.METHODS if n in ALL_NAMES]
    cnn_only = ["cam", "shapley_cam", "ablation_cam", "lrp", "deep_lift"]
    assert sorted(n for n in ALL_NAMES if gc.METHODS[n].families == ("CNN",)) == sorted(cnn_only)
    assert list(gc.methods_for(tiny_vit)) == [n for n in gc.METHODS if n not in cnn_only]
    assert all(gc.METHODS[n].families == ("ViT",) for n in TRANSFORMER_NAMES)
    assert all(gc.METHODS[n].families == gc.FAMILIES for n in ALL_NAMES if n not in cnn_only)


@pytest.mark.parametrize("name", ["cam", "shapley_cam", "ablation_cam", "lrp", "deep_lift"])
def test_a_cnn_method_refuses_a_vit_and_says_why(name, tiny_vit, tiny_input):
    before = snapshot(tiny_vit)
    with pytest.raises(ValueError, match=r"explains CNNs only, and VisionTransformer is a ViT: \w+"):
        gc.explain(tiny_vit, tiny_input, 1, VIT_LAYERS, ["grad_cam", name])
    assert_no_hooks(tiny_vit)
    assert_same_state(before, tiny_vit)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_entry_is_filled_in(name):
    m = gc.METHODS[name]
    assert isinstance(m, gc.Method)
    assert m.name == name
    assert isinstance(m.cls, type) and issubclass(m.cls, Explainer)
    for text in (m.label, m.paper, m.summary):
        assert isinstance(text, str) and text.strip(), name
    assert isinstance(m.year, int) and 2010 <= m.year <= 2030
    assert m.kind in gc.KINDS
    assert m.needs == gc.KINDS[m.kind]
    assert isinstance(m.class_specific, bool) and isinstance(m.layered, bool)
    assert isinstance(m.options, tuple) and all(isinstance(o, str) for o in m.options)
    assert (m.cls, m.slow, m.class_specific, m.layered, m.stochastic) == EXPECTED[name]
    if m.stochastic:
        assert "seed" in m.options, name


@pytest.mark.parametrize("name", ALL_NAMES)
def test_create_builds_an_instance_of_the_class(name, tiny):
    explainer = gc.METHODS[name].create(tiny, LAYERS)
    assert type(explainer) is gc.METHODS[name].cls
    assert explainer.model is tiny
    if gc.METHODS[name].layered:
        expected_layers = ["relu2"] if name == "cam" else LAYERS
        assert explainer.layers == expected_layers
    assert_no_hooks(tiny)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_create_takes_every_option_the_entry_lists(name, tiny):
    values = {
        "fc": "fc",
        "counterfactual": True,
        "batch_size": 3,
        "progress": lambda done, total: None,
        "window": 4,
        "stride": 2,
        "baseline": 0.5,
        "samples": 2,
        "noise": 0.5,
        "seed": 1,
        "steps": 2,
        "rule": "trapezoid",
        "method": "saliency",
        "variant": "squared",
        "method_options": {},
        "baselines": ("black",),
        "comparisons": 2,
        "alpha": 0.5,
        "versus": 4,
        "masks": 4,
        "grid": 2,
        "p": 0.5,
        "segments": torch.zeros(8, 8, dtype=torch.long),
        "kernel": "rbf",
        "gamma": 0.5,
        "k": 1.0,
        "epsilon": 1e-3,
        "area": 0.25,
        "learning_rate": 0.1,
    }
    # one option name, two methods' values: LRP's rule is not Integrated Gradients' rule
    values.update({"lrp": {"rule": "alpha_beta"}}.get(name, {}))
    m = gc.METHODS[name]
    assert set(m.options) <= set(values), m.options
    explainer = m.create(tiny, LAYERS, **{option: values[option] for option in m.options})
    assert isinstance(explainer, m.cls)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_create_refuses_an_unknown_option(name, tiny):
    with pytest.raises(ValueError, match="takes no option colour"):
        gc.METHODS[name].create(tiny, LAYERS, colour="red")


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n not in INPUT_NAMES])
def test_a_layered_method_needs_layers(name, tiny):
    for layers in (None, []):
        with pytest.raises(ValueError):
            gc.METHODS[name].create(tiny, layers)


# --------------------------------------------------------------------------------------------
# explain: each entry equals the method's own class
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("methods", ["all", ALL_NAMES, ALL_NAMES[::-1]])
def test_explain_gives_what_each_class_gives(tiny, tiny_input, methods):
    targets = [0, 3, 1]
    results = gc.explain(tiny, tiny_input, target=targets, layers=LAYERS, methods=methods, options=TINY_OPTIONS)
    names = list(gc.methods_for(tiny)) if methods == "all" else methods
    assert list(results) == list(names)  # in the order asked for (the registry's for "all", a CNN's methods)
    mismatches = []
    for name in names:
        r = results[name]
        assert isinstance(r, gc.Result), name
        own = build_method(name, tiny, LAYERS)(tiny_input, targets)
        if name in INPUT_NAMES:
            assert list(r.maps) == ["input"]
            got, expected = {"input": r.maps["input"]}, {"input": own}
        else:
            got, expected = result_tensors(r), result_tensors(own)
        assert got.keys() == expected.keys(), name
        # the same forward pass and the same backward rules: the same numbers, bit for bit
        mismatches += [f"{name} {key}" for key in expected if not torch.equal(got[key], expected[key])]
        assert r.targets.tolist() == targets
        assert r.seconds >= 0 and r.pass_seconds >= 0
    assert mismatches == []
    shared = results["grad_cam"].logits
    assert all(torch.equal(r.logits, shared) for r in results.values())


@pytest.mark.parametrize("layer", ["conv2", "bn", "relu2", "relu1"])
def test_deconvnet_in_explain_equals_deconvnet_alone_whatever_layers_are_explained(tiny, tiny_input, layer):
    """The layers the other methods explain must not change the deconvnet's picture, also when
    one of them is an activation module (whose backward rule the deconvnet rewrites)."""
    alone = gc.Deconvnet(tiny)(tiny_input, target=0)
    together = gc.explain(tiny, tiny_input, 0, layers=[layer], methods=["grad_cam", "deconvnet"])
    torch.testing.assert_close(together["deconvnet"].maps["input"], alone, rtol=1e-6, atol=1e-6 * alone.abs().max())


def test_input_space_methods_have_the_one_key_input(tiny, tiny_input):
    results = gc.explain(tiny, tiny_input, 2, LAYERS, INPUT_NAMES + ["guided_grad_cam"], options=TINY_OPTIONS)
    for name in ("saliency", "guided_backprop", "deconvnet"):
        assert list(results[name].maps) == ["input"]
        assert results[name].maps["input"].shape == (3, 3, 8, 8)
    assert results["occlusion"].maps["input"].shape == (3, 8, 8)
    # Guided Grad-CAM explains layers: one (N, 3, H, W) picture per layer
    assert list(results["guided_grad_cam"].maps) == LAYERS
    assert results["guided_grad_cam"].maps["conv2"].shape == (3, 3, 8, 8)


def test_explain_on_resnet34_equals_each_class(resnet34, small_batch):
    model = resnet34.module
    x = small_batch[:1]
    names = ["cam", "grad_cam_plus_plus", "layer_cam", "eigen_cam", "saliency", "deconvnet"]
    results = gc.explain(model, x, target=5, layers=["layer3", "layer4"], methods=names)
    for name in names:
        own = gc.METHODS[name].create(model, ["layer3", "layer4"])(x, 5)
        got = results[name].maps["input"] if name in INPUT_NAMES else results[name]
        assert_same_tensors(result_tensors(got), result_tensors(own))
    assert list(results["cam"].maps) == ["layer4"]
    assert_no_hooks(model)


def test_explain_accepts_one_layer_and_one_method_as_strings(tiny, tiny_input):
    r = gc.explain(tiny, tiny_input, 1, layers="conv2", methods="layer_cam")
    assert list(r) == ["layer_cam"] and list(r["layer_cam"].maps) == ["conv2"]
    assert torch.equal(r["layer_cam"].maps["conv2"], gc.LayerCAM(tiny, "conv2")(tiny_input, 1).maps["conv2"])


# --------------------------------------------------------------------------------------------
# explain: how many passes
# --------------------------------------------------------------------------------------------


@pytest.fixture
def grad_calls(monkeypatch):
    """How many times torch.autograd.grad runs (each is one backward pass)."""
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


def test_the_gradient_methods_share_one_forward_and_one_backward_pass(tiny, tiny_input, grad_calls):
    with count_calls(tiny, tiny.conv1, tiny.conv2, tiny.fc) as counts:
        results = gc.explain(tiny, tiny_input, [1, 2, 3], LAYERS, GRADIENT_NAMES)
    # fc runs once more on its own: CAM checks that the logits are fc(GAP(A)) (no model pass)
    assert counts == [1, 1, 1, 2]
    assert len(grad_calls) == 1
    assert list(results) == GRADIENT_NAMES


def test_the_rectified_methods_reuse_the_forward_pass(tiny, tiny_input, grad_calls):
    # one plain backward pass, then one per rule: "guided" (shared by guided backprop and Guided
    # Grad-CAM) and "deconvnet"
    names = [*GRADIENT_NAMES, "guided_backprop", "deconvnet", "guided_grad_cam"]
    with count_calls(tiny, tiny.conv1) as counts:
        gc.explain(tiny, tiny_input, 0, LAYERS, names)
    assert counts == [1, 1]
    assert len(grad_calls) == 3


def test_with_every_method_only_the_perturbation_methods_add_forward_passes(tiny, tiny_input, grad_calls):
    big = {"batch_size": 1000}
    options = {"score_cam": big, "ablation_cam": big, "occlusion": {**TINY_OPTIONS["occlusion"], **big}}
    with count_calls(tiny, tiny.conv1, tiny.conv2, tiny.fc) as counts:
        results = gc.explain(tiny, tiny_input, None, LAYERS, FIRST_NAMES, options=options)
    top, conv1, conv2, fc = counts
    # Score-CAM: one batch per image and layer that has a varying channel; occlusion: one batch
    # per image; Ablation-CAM runs the rest of the network from the recorded activations only:
    # fc, once per image and layer, and conv2's ablated copies through bn/relu2 (not conv1/conv2).
    acts = results["score_cam"].activations
    score_batches = sum(
        int(bool((a[i].amax(dim=(1, 2)) > a[i].amin(dim=(1, 2))).any())) for a in acts.values() for i in range(3)
    )
    assert top == 1 + score_batches + 3
    assert conv1 == conv2 == top
    assert fc == top + 3 * 2 + 1  # + 1: CAM's check of its head
    assert len(grad_calls) == 3  # the plain backward pass, then "guided" and "deconvnet"


# --------------------------------------------------------------------------------------------
# explain: what it refuses
# --------------------------------------------------------------------------------------------


def test_an_unknown_method_is_a_value_error(tiny, tiny_input):
    with pytest.raises(ValueError, match="Unknown method 'gradcam'; choose from cam, grad_cam"):
        gc.explain(tiny, tiny_input, layers=LAYERS, methods=["grad_cam", "gradcam"])
    with pytest.raises(ValueError, match="Unknown method"):
        gc.explain(tiny, tiny_input, layers=LAYERS, methods="everything")
    with pytest.raises(ValueError, match="none given"):
        gc.explain(tiny, tiny_input, layers=LAYERS, methods=[])
    assert_no_hooks(tiny)


def test_options_for_a_method_not_asked_for_are_a_value_error(tiny, tiny_input):
    with pytest.raises(ValueError, match="occlusion"):
        gc.explain(tiny, tiny_input, layers=LAYERS, methods=["grad_cam"], options={"occlusion": {"window": 4}})
    assert_no_hooks(tiny)


def test_an_option_a_method_does_not_take_is_a_value_error(tiny, tiny_input):
    with pytest.raises(ValueError, match="takes no option window"):
        gc.explain(tiny, tiny_input, layers=LAYERS, methods=["grad_cam"], options={"grad_cam": {"window": 4}})
    assert_no_hooks(tiny)


def test_a_class_out_of_range_is_a_value_error(tiny, tiny_input):
    with pytest.raises(ValueError, match="out of range"):
        gc.explain(tiny, tiny_input, 5, LAYERS, "all", options=TINY_OPTIONS)
    assert_no_hooks(tiny)


# --------------------------------------------------------------------------------------------
# explain: progress
# --------------------------------------------------------------------------------------------


def test_progress_is_reported_for_each_slow_method_in_turn(tiny, tiny_input):
    calls = []
    gc.explain(
        tiny,
        tiny_input[:1],
        0,
        ["conv2"],
        ["grad_cam", "score_cam", "ablation_cam", "occlusion"],
        options={"occlusion": {"window": 4, "stride": 4}, "ablation_cam": {"batch_size": 6}},
        progress=lambda done, total: calls.append((done, total)),
    )
    # ablation: 6 channels in one batch; occlusion: 4 windows in one batch; Score-CAM: the
    # varying channels of conv2 (at most 6)
    assert (6, 6) in calls and (4, 4) in calls
    assert calls[-1] == (4, 4)
    assert all(0 < done <= total for done, total in calls)


def test_a_progress_given_in_options_wins(tiny, tiny_input):
    general, own = [], []
    gc.explain(
        tiny,
        tiny_input[:1],
        0,
        ["conv2"],
        ["ablation_cam", "occlusion"],
        options={"occlusion": {"window": 4, "stride": 4, "progress": lambda d, t: own.append((d, t))}},
        progress=lambda d, t: general.append((d, t)),
    )
    assert own == [(4, 4)]
    assert general == [(6, 6)]


def test_a_progress_that_raises_cancels_explain_and_leaves_the_model_as_it_was(tiny_input):
    model = make_tiny()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = snapshot(model)

    def cancel(done, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        gc.explain(model, tiny_input, 1, LAYERS, "all", options=TINY_OPTIONS, progress=cancel)
    assert_no_hooks(model)
    assert_same_state(before, model)


# --------------------------------------------------------------------------------------------
# Every registered method: batches
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_batch_item_equals_the_image_alone(name, tiny, tiny_input):
    explainer = build_method(name, tiny)
    targets = [3, 0, 4]
    batch = call(explainer, tiny_input, targets)
    for i, target in enumerate(targets):
        alone = call(explainer, tiny_input[i : i + 1], target)
        assert alone.keys() == batch.keys()
        for key in batch:
            got, expected = batch[key][i], alone[key][0]
            scale = batch[key].abs().max() if batch[key].is_floating_point() else 0
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * scale, msg=f"{name} {key} {i}")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_one_image_of_shape_c_h_w_is_a_batch_of_one(name, tiny, tiny_input):
    explainer = build_method(name, tiny)
    assert_same_tensors(call(explainer, tiny_input[1], 2), call(explainer, tiny_input[1:2], 2))


# --------------------------------------------------------------------------------------------
# Every registered method: hygiene
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_no_hook_left_after_a_call_that_succeeded(name, tiny, tiny_input):
    out = call(build_method(name, tiny), tiny_input, 1)
    assert_no_hooks(tiny)
    assert any(v.is_floating_point() and v.abs().sum() > 0 for v in out.values())


@pytest.mark.parametrize("name", ALL_NAMES)
def test_no_hook_left_after_a_class_out_of_range(name, tiny, tiny_input):
    explainer = build_method(name, tiny)
    for target in (5, -1, [0, 1, 99]):
        with pytest.raises(ValueError, match="out of range: this model has 5 classes"):
            explainer(tiny_input, target)
        assert_no_hooks(tiny)
    call(explainer, tiny_input, 0)  # and it still works
    assert_no_hooks(tiny)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("fail_after", ["relu1", "relu2"])
def test_no_hook_left_after_the_forward_pass_raised(name, fail_after, tiny_input):
    model = make_tiny(fail_after=fail_after)
    if name == "ablation_cam":
        # it traces the model when built (torch.fx runs forward): the failure shows up there
        with pytest.raises(ValueError, match="forward failed on purpose"):
            build_method(name, model)
    else:
        with pytest.raises(RuntimeError, match="forward failed on purpose"):
            build_method(name, model)(tiny_input, 1)
    assert_no_hooks(model)
    free = []
    t = threading.Thread(target=lambda: free.append(model_lock(model).acquire(blocking=False)))
    t.start()
    t.join()
    assert free == [True], "the model's lock was not released"


@pytest.mark.parametrize("name", SLOW_METHOD_NAMES)
def test_a_progress_callback_that_raises_propagates_and_leaves_the_model_as_it_was(name, tiny_input):
    model = make_tiny()
    model.conv1.weight.requires_grad_(False)
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 0.25)
    model.bn.train()
    model.bn.track_running_stats = False
    before = snapshot(model)
    calls = []

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        calls.append((done, total))
        raise Cancelled(name)

    with pytest.raises(Cancelled, match=name):
        build_method(name, model, progress=cancel, batch_size=2)(tiny_input, 1)
    assert len(calls) == 1 and calls[0][0] == 2
    assert_no_hooks(model)
    assert_same_state(before, model)
    assert model.bn.training and not model.conv1.training


@pytest.mark.parametrize("name", ALL_NAMES)
def test_flags_parameters_and_grads_are_left_as_they_were(name, tiny_input):
    model = make_tiny()
    model.conv1.weight.requires_grad_(False)
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 0.25)
    model.fc.bias.grad = torch.arange(5.0)
    model.bn.train()
    model.bn.track_running_stats = False
    before = snapshot(model)
    call(build_method(name, model), tiny_input, 2)
    assert_same_state(before, model)
    assert model.bn.training and not model.conv1.training


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_model_in_training_mode_is_explained_as_it_predicts_and_left_training(name, tiny_input):
    model = make_tiny()
    expected = call(build_method(name, model), tiny_input, 2)
    model.train()
    before = snapshot(model)
    got = call(build_method(name, model), tiny_input, 2)
    assert_same_tensors(got, expected)
    assert all(m.training for m in model.modules())
    assert_same_state(before, model)  # BatchNorm's running statistics included


@pytest.mark.parametrize("name", ALL_NAMES)
def test_results_are_detached(name, tiny, tiny_input):
    for key, value in call(build_method(name, tiny), tiny_input, 0).items():
        assert not value.requires_grad and value.grad_fn is None, f"{name} {key}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_frozen_model_gives_the_same_results(name, tiny_input):
    model = make_tiny()
    expected = call(build_method(name, model), tiny_input, 4)
    for p in model.parameters():
        p.requires_grad_(False)
    assert_same_tensors(call(build_method(name, model), tiny_input, 4), expected)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ALL_NAMES)
def test_inside_no_grad_gives_the_same_results(name, tiny, tiny_input):
    explainer = build_method(name, tiny)
    expected = call(explainer, tiny_input, 3)
    with torch.no_grad():
        inside = call(explainer, tiny_input, 3)
        assert not torch.is_grad_enabled()  # the caller's mode is restored
    assert torch.is_grad_enabled()
    assert_same_tensors(inside, expected)


def test_explain_inside_no_grad_on_a_frozen_model_gives_the_same_results(tiny_input):
    model = make_tiny()
    expected = gc.explain(model, tiny_input, 1, LAYERS, "all", options=TINY_OPTIONS)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        inside = gc.explain(model, tiny_input, 1, LAYERS, "all", options=TINY_OPTIONS)
    for name in ALL_NAMES:
        assert_same_tensors(result_tensors(inside[name]), result_tensors(expected[name]))
    assert_no_hooks(model)


# --------------------------------------------------------------------------------------------
# The methods made for Vision Transformers (families ("ViT",)): the same promises, on a tiny
# timm ViT that takes TinyCNN's 8x8 inputs; on a CNN they refuse
# --------------------------------------------------------------------------------------------

#: name -> (class, slow, class-specific, layered, stochastic), as in EXPECTED.
TRANSFORMER_EXPECTED = {
    "attention_rollout": (gc.AttentionRollout, False, False, False, False),
    "transformer_attribution": (gc.TransformerAttribution, False, True, False, False),
    "legrad": (gc.LeGrad, False, True, False, False),
}
TRANSFORMER_NAMES = list(TRANSFORMER_EXPECTED)
#: A cheap value of each of their options.
TRANSFORMER_VALUES = {"head_fusion": "max", "discard_ratio": 0.5, "blocks": 1}
VIT_LAYERS = ["blocks.0.norm1", "blocks.1.norm1"]


def build_vit_method(name: str, model, **options):
    return gc.METHODS[name].create(model, **options)


def unsettled_vit(**kwargs):
    """A tiny ViT with a frozen parameter, grads set and one block in training mode."""
    model = make_tiny_vit(**kwargs)
    model.patch_embed.proj.weight.requires_grad_(False)
    model.blocks[0].attn.qkv.weight.grad = torch.full_like(model.blocks[0].attn.qkv.weight, 0.25)
    model.head.bias.grad = torch.arange(5.0)
    model.blocks[1].train()
    return model


def test_every_method_of_a_vit_in_one_call(tiny_vit, tiny_input):
    """"all" on a ViT: every method of its family, each shaped as on a CNN, the attention methods'
    maps on the 4x4 patch grid."""
    results = gc.explain(tiny_vit, tiny_input, [0, 3, 1], VIT_LAYERS, "all", options=TINY_OPTIONS)
    assert list(results) == list(gc.methods_for(tiny_vit))
    for name, r in results.items():
        for key, m in r.maps.items():
            assert m.shape[0] == 3 and torch.isfinite(m).all(), name
            if key in VIT_LAYERS and m.dim() == 3:  # Guided Grad-CAM's per layer: a picture
                assert m.shape[-2:] == (4, 4), name
    assert all(results[n].maps["input"].shape == (3, 4, 4) for n in TRANSFORMER_NAMES)
    assert_no_hooks(tiny_vit)


@pytest.mark.parametrize("name", TRANSFORMER_NAMES)
def test_every_transformer_entry_is_filled_in_and_builds(name, tiny_vit):
    m = gc.METHODS[name]
    assert m.name == name and isinstance(m, gc.Method)
    for text in (m.label, m.paper, m.summary):
        assert isinstance(text, str) and text.strip(), name
    assert isinstance(m.year, int) and 2010 <= m.year <= 2030
    assert m.kind in gc.KINDS and m.needs == gc.KINDS[m.kind]
    assert (m.cls, m.slow, m.class_specific, m.layered, m.stochastic) == TRANSFORMER_EXPECTED[name]
    explainer = m.create(tiny_vit, None, **{option: TRANSFORMER_VALUES[option] for option in m.options})
    assert type(explainer) is m.cls and explainer.model is tiny_vit
    with pytest.raises(ValueError, match="takes no option colour"):
        m.create(tiny_vit, colour="red")
    assert_no_hooks(tiny_vit)


@pytest.mark.parametrize("name", TRANSFORMER_NAMES)
def test_a_transformer_method_refuses_a_cnn(name, tiny, tiny_input):
    before = snapshot(tiny)
    with pytest.raises(ValueError, match="explains ViTs only, and TinyCNN is a CNN: it reads a Vision Transformer's"):
        gc.explain(tiny, tiny_input, 1, LAYERS, ["grad_cam", name])
    assert_no_hooks(tiny)
    assert_same_state(before, tiny)


def test_explain_on_a_vit_gives_what_each_class_gives(tiny_vit, tiny_input):
    targets = [0, 3, 1]
    names = [*TRANSFORMER_NAMES, "grad_cam", "layer_cam", "saliency"]
    results = gc.explain(tiny_vit, tiny_input, targets, VIT_LAYERS, names)
    assert list(results) == names
    for name in TRANSFORMER_NAMES:
        assert list(results[name].maps) == ["input"] and results[name].maps["input"].shape == (3, 4, 4)
        assert torch.equal(results[name].maps["input"], build_vit_method(name, tiny_vit)(tiny_input, targets))
        assert torch.equal(results[name].logits, results["grad_cam"].logits)
    assert_no_hooks(tiny_vit)


@pytest.mark.parametrize("name", TRANSFORMER_NAMES)
def test_a_transformer_batch_item_equals_the_image_alone(name, tiny_vit, tiny_input):
    explainer = build_vit_method(name, tiny_vit)
    targets = [3, 0, 4]
    batch = call(explainer, tiny_input, targets)["input"]
    for i, target in enumerate(targets):
        alone = call(explainer, tiny_input[i : i + 1], target)["input"]
        torch.testing.assert_close(batch[i], alone[0], rtol=1e-5, atol=1e-6 * batch.abs().max())
    assert_same_tensors(call(explainer, tiny_input[1], 2), call(explainer, tiny_input[1:2], 2))


@pytest.mark.parametrize("name", TRANSFORMER_NAMES)
def test_no_hook_left_after_a_transformer_method_succeeded_or_failed(name, tiny_vit, tiny_input):
    explainer = build_vit_method(name, tiny_vit)
    assert call(explainer, tiny_input, 1)["input"].abs().sum() > 0
    assert_no_hooks(tiny_vit)
    for target in (5, -1, [0, 1, 99]):
        with pytest.raises(ValueError, match="out of range: this model has 5 classes"):
            explainer(tiny_input, target)
        assert_no_hooks(tiny_vit)
    model = make_tiny_vit()

    def fail(*args, **kwargs):
        raise RuntimeError("forward failed on purpose")

    model.blocks[1].forward = fail  # an instance attribute: the module stays where it was
    with pytest.raises(RuntimeError, match="forward failed on purpose"):
        build_vit_method(name, model)(tiny_input, 1)
    assert_no_hooks(model)
    free = []
    t = threading.Thread(target=lambda: free.append(model_lock(model).acquire(blocking=False)))
    t.start()
    t.join()
    assert free == [True], "the model's lock was not released"


@pytest.mark.parametrize("name", TRANSFORMER_NAMES)
def test_a_transformer_method_leaves_flags_parameters_and_grads_as_they_were(name, tiny_input):
    expected = call(build_vit_method(name, make_tiny_vit()), tiny_input, 2)
    model = unsettled_vit()
    before = snapshot(model)
    assert_same_tensors(call(build_vit_method(name, model), tiny_input, 2), expected)
    assert_same_state(before, model)
    assert model.blocks[1].training and not model.blocks[0].training
    model.train()
    assert_same_tensors(call(build_vit_method(name, model), tiny_input, 2), expected)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name", TRANSFORMER_NAMES)
def test_a_transformer_method_gives_the_same_frozen_inside_no_grad_and_detached(name, tiny_input):
    model = make_tiny_vit()
    expected = call(build_vit_method(name, model), tiny_input, 4)
    assert not expected["input"].requires_grad and expected["input"].grad_fn is None
    for p in model.parameters():
        p.requires_grad_(False)
    assert_same_tensors(call(build_vit_method(name, model), tiny_input, 4), expected)
    with torch.no_grad():
        assert_same_tensors(call(build_vit_method(name, model), tiny_input, 4), expected)
        assert not torch.is_grad_enabled()
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())

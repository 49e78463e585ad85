"""gradcam_core.hooks: hooks that live for one call, layer checks, the per-model lock.

Also the promises every explainer makes through these hooks: no hook outlives a call (returned
or raised), the model's flags, parameters and gradients are left as they were, explaining works
inside ``torch.no_grad()`` and on a frozen model, and concurrent calls on one model are kept apart.
"""

from __future__ import annotations

import gc as garbage
import threading
import weakref

import pytest
import torch
from conftest import (
    EXPLAINER_NAMES,
    assert_no_hooks,
    assert_same_state,
    build_explainer,
    explain_maps,
    make_tiny,
    snapshot,
)
from torch import nn

import gradcam_core as gc
from gradcam_core.hooks import (
    GUIDED_ACTIVATIONS,
    capture_activation_outputs,
    capture_outputs,
    check_layers,
    model_lock,
    rectified_gradients,
)


def lock_is_free_for_another_thread(model: nn.Module) -> bool:
    """Whether a second thread could take ``model``'s lock right now (it gives it back at once)."""
    got = []

    def try_lock():
        lock = model_lock(model)
        if lock.acquire(blocking=False):
            lock.release()
            got.append(True)
        else:
            got.append(False)

    t = threading.Thread(target=try_lock)
    t.start()
    t.join()
    return got[0]


# --------------------------------------------------------------------------------------------
# check_layers
# --------------------------------------------------------------------------------------------


def test_check_layers_accepts_a_name_or_a_list(tiny):
    assert check_layers(tiny, "conv1") == ["conv1"]
    assert check_layers(tiny, ("conv1", "bn")) == ["conv1", "bn"]


def test_check_layers_lists_valid_names_for_a_wrong_one(tiny):
    with pytest.raises(ValueError) as info:
        check_layers(tiny, ["conv1", "layer9"])
    message = str(info.value)
    assert "'layer9'" in message
    for name in ("conv1", "relu1", "conv2", "bn", "relu2", "pool", "fc"):
        assert name in message
    assert "'conv1'" not in message.split("Valid")[0]  # only the unknown name is reported


def test_check_layers_refuses_the_root_and_nothing(tiny):
    with pytest.raises(ValueError, match="no layer named ''"):
        check_layers(tiny, [""])
    with pytest.raises(ValueError, match="at least one layer"):
        check_layers(tiny, [])


@pytest.mark.parametrize("kind", ["GradCAM", "GuidedGradCAM", "FeatureMaps"])
def test_explainers_refuse_a_wrong_layer_name_listing_valid_ones(resnet34, kind):
    with pytest.raises(ValueError) as info:
        build_explainer(kind, resnet34.module, layers=["layer5"])
    message = str(info.value)
    assert "'layer5'" in message and "Valid layer names" in message
    for name in ("conv1", "layer1", "layer4", "layer4.2.conv2", "avgpool", "fc"):
        assert name in message
    assert_no_hooks(resnet34.module)


def test_cam_refuses_a_wrong_layer_name_listing_valid_ones(resnet34):
    with pytest.raises(ValueError) as info:
        gc.CAM(resnet34.module, "layer44", "fc")
    assert "'layer44'" in str(info.value) and "layer4" in str(info.value)


# --------------------------------------------------------------------------------------------
# capture_outputs / capture_activation_outputs / guided_gradients
# --------------------------------------------------------------------------------------------


def test_capture_outputs_records_the_layer_output_before_an_inplace_relu(tiny):
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected_conv1 = tiny.conv1(x)  # before relu1, which is in place
        expected_logits = tiny(x)
    with torch.no_grad(), capture_outputs(tiny, ["conv1", "fc"]) as out:
        logits = tiny(x)
    assert set(out) == {"conv1", "fc"}
    assert torch.equal(out["conv1"], expected_conv1)
    assert (out["conv1"] < 0).any(), "the in-place ReLU after conv1 reached the recorded tensor"
    assert torch.equal(out["fc"], logits)
    assert torch.equal(logits, expected_logits)  # the clone handed on changes nothing downstream
    assert_no_hooks(tiny)


def test_capture_outputs_keeps_the_graph_for_gradients(tiny):
    x = torch.randn(1, 3, 8, 8)
    with capture_outputs(tiny, ["relu2"]) as out:
        logits = tiny(x.requires_grad_(True))
    (grad,) = torch.autograd.grad(logits[0, 2], out["relu2"])
    # logits = fc(mean(relu2)): d logit_2 / d A^k_ij = w_2k / (h * w)
    expected = (tiny.fc.weight[2] / 64.0).view(1, 6, 1, 1).expand(1, 6, 8, 8)
    assert torch.allclose(grad, expected, atol=1e-7)


def test_capture_outputs_removes_its_hooks_when_the_block_raises(tiny):
    with pytest.raises(KeyError):
        with capture_outputs(tiny, ["conv1", "bn"]):
            assert len(tiny.conv1._forward_hooks) == 1
            raise KeyError("inside the block")
    assert_no_hooks(tiny)


def test_capture_outputs_refuses_a_layer_that_returns_no_tensor():
    class TupleOut(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = TupleOut()

        def forward(self, x):
            return self.pair(x)[0].flatten(1)

    net = Net()
    with pytest.raises(ValueError, match="'pair' returns tuple, not a tensor"):
        with capture_outputs(net, ["pair"]):
            net(torch.zeros(1, 3, 4, 4))
    assert_no_hooks(net)


def test_capture_activation_outputs_sees_each_call_of_a_reused_relu(resnet34):
    # torchvision's BasicBlock calls its one ReLU twice; ResNet34 has 3+4+6+3 = 16 blocks,
    # plus the stem's ReLU: 33 calls.
    relus = [m for m in resnet34.module.modules() if isinstance(m, GUIDED_ACTIVATIONS)]
    assert len(relus) == 17
    with torch.no_grad(), capture_activation_outputs(resnet34.module) as outs:
        resnet34.module(torch.randn(1, 3, 32, 32))
    assert len(outs) == 33
    assert all((o >= 0).all() for o in outs)
    assert_no_hooks(resnet34.module)


def test_guided_gradients_by_hand():
    # y = w2 . relu(w1 * x) on x = [1, -1] through a ReLU whose output gradient is [1, -2].
    x = torch.tensor([1.0, -1.0], requires_grad=True)
    h = torch.relu(x * torch.tensor([2.0, 3.0]))  # pre-activation [2, -3] -> [2, 0]
    y = (h * torch.tensor([1.0, -2.0])).sum()
    g = rectified_gradients(y, x, [h], rule="guided")
    # guided: clamp([1, -2]) = [1, 0]; relu' = [1, 0]; times d pre / d x = [2, 3] -> [2, 0]
    assert torch.equal(g, torch.tensor([2.0, 0.0]))
    # the hooks were on this pass only: a plain gradient afterwards is not clamped
    x2 = torch.tensor([1.0, 1.0], requires_grad=True)
    h2 = torch.relu(x2 * torch.tensor([2.0, 3.0]))
    y2 = (h2 * torch.tensor([1.0, -2.0])).sum()
    (plain,) = torch.autograd.grad(y2, x2)
    assert torch.equal(plain, torch.tensor([2.0, -6.0]))


# --------------------------------------------------------------------------------------------
# No hook outlives a call, whether it returns or raises
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_no_hook_left_after_a_call_that_succeeded(kind, tiny, tiny_input):
    explainer = build_explainer(kind, tiny)
    explain_maps(explainer, tiny_input, 1)
    assert_no_hooks(tiny)


@pytest.mark.parametrize("kind", [k for k in EXPLAINER_NAMES if k != "FeatureMaps"])
@pytest.mark.parametrize("target", [5, -1, [0, 1, 99]])
def test_no_hook_left_after_a_class_out_of_range(kind, target, tiny, tiny_input):
    explainer = build_explainer(kind, tiny)
    with pytest.raises(ValueError, match="out of range: this model has 5 classes"):
        explainer(tiny_input, target)
    assert_no_hooks(tiny)
    explain_maps(explainer, tiny_input, 0)  # and the explainer still works after that
    assert_no_hooks(tiny)


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
@pytest.mark.parametrize("fail_after", ["relu1", "relu2"])
def test_no_hook_left_after_the_forward_pass_raised(kind, fail_after, tiny_input):
    model = make_tiny(fail_after=fail_after)
    explainer = build_explainer(kind, model)
    with pytest.raises(RuntimeError, match="forward failed on purpose"):
        explain_maps(explainer, tiny_input, 1)
    assert_no_hooks(model)
    # ... and the lock was released: another thread can take it at once
    assert lock_is_free_for_another_thread(model)


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_no_hook_left_on_resnet34(kind, resnet34, small_batch):
    explainer = build_explainer(kind, resnet34.module, layers=["layer3", "layer4"], cam_layer="layer4")
    explain_maps(explainer, small_batch[:1], 3)
    assert_no_hooks(resnet34.module)
    if kind != "FeatureMaps":
        with pytest.raises(ValueError):
            explainer(small_batch[:1], 1000)
        assert_no_hooks(resnet34.module)


# --------------------------------------------------------------------------------------------
# The model is left exactly as it was
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_flags_parameters_and_grads_are_left_as_they_were(kind, tiny_input):
    model = make_tiny()
    # a mix: some parameters frozen, some with a .grad already, some without
    model.conv1.weight.requires_grad_(False)
    model.conv2.weight.grad = torch.full_like(model.conv2.weight, 0.25)
    model.fc.bias.grad = torch.arange(5.0)
    model.bn.train()  # one submodule in training mode: the flag must stay as the caller set it
    model.bn.track_running_stats = False  # (so the pass does not touch buffers either)
    before = snapshot(model)
    explain_maps(build_explainer(kind, model), tiny_input, 2)
    assert_same_state(before, model)
    assert model.bn.training and not model.conv1.training


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_a_model_in_training_mode_is_explained_as_it_predicts_and_left_training(kind, tiny_input):
    model = make_tiny()  # BatchNorm's running statistics differ from any batch's own
    expected = explain_maps(build_explainer(kind, model), tiny_input, 2)  # eval mode, as made
    model.train()
    before = snapshot(model)
    got = explain_maps(build_explainer(kind, model), tiny_input, 2)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert all(m.training for m in model.modules())
    assert_same_state(before, model)  # running statistics included


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_resnet34_is_left_as_it_was(kind, resnet34, small_batch):
    before = snapshot(resnet34.module)
    explain_maps(build_explainer(kind, resnet34.module, layers=["layer4"], cam_layer="layer4"), small_batch[:2], 7)
    assert_same_state(before, resnet34.module)
    assert not resnet34.module.training


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_explaining_inside_no_grad_gives_the_same_maps(kind, tiny, tiny_input):
    explainer = build_explainer(kind, tiny)
    expected = explain_maps(explainer, tiny_input, 3)
    with torch.no_grad():
        inside = explain_maps(explainer, tiny_input, 3)
        assert not torch.is_grad_enabled()  # the caller's mode is restored
    assert expected.keys() == inside.keys()
    for name in expected:
        assert torch.equal(inside[name], expected[name]), name
    if kind in ("GradCAM", "GuidedBackprop", "GuidedGradCAM"):
        assert any(v.abs().sum() > 0 for v in inside.values())


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_a_frozen_model_still_works(kind, tiny_input):
    model = make_tiny()
    expected = explain_maps(build_explainer(kind, model), tiny_input, 4)
    for p in model.parameters():
        p.requires_grad_(False)
    frozen = explain_maps(build_explainer(kind, model), tiny_input, 4)
    for name in expected:
        assert torch.equal(frozen[name], expected[name]), name
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_results_are_detached(kind, tiny, tiny_input):
    explainer = build_explainer(kind, tiny)
    out = explainer(tiny_input) if kind == "FeatureMaps" else explainer(tiny_input, 0)
    if isinstance(out, torch.Tensor):
        tensors = {"guided": out}
    elif isinstance(out, dict):
        tensors = out
    else:
        tensors = {"logits": out.logits, "targets": out.targets}
        for field in ("maps", "weights", "activations", "cams"):
            tensors.update({f"{field}:{k}": v for k, v in getattr(out, field).items()})
        if out.guided is not None:
            tensors["guided"] = out.guided
    for name, value in tensors.items():
        assert not value.requires_grad and value.grad_fn is None, name


# --------------------------------------------------------------------------------------------
# model_lock and concurrent calls
# --------------------------------------------------------------------------------------------


def test_model_lock_is_one_reentrant_lock_per_model():
    a, b = make_tiny(), make_tiny()
    assert model_lock(a) is model_lock(a)
    assert model_lock(a) is not model_lock(b)
    with model_lock(a):
        with model_lock(a):  # re-entrant: an explainer may call another one
            pass
    # held in this thread, another thread cannot take it; released, it can
    with model_lock(a):
        assert not lock_is_free_for_another_thread(a)
    assert lock_is_free_for_another_thread(a)


def test_model_lock_does_not_keep_a_model_alive():
    model = make_tiny()
    lock = model_lock(model)
    ref = weakref.ref(model)
    del model
    garbage.collect()
    assert ref() is None, "the lock registry keeps the model alive"
    assert lock.acquire(blocking=False)  # the lock object itself still works for its holder
    lock.release()


def test_concurrent_mixed_explainers_on_one_model_match_a_sequential_run(resnet34, small_batch):
    """Eight threads, each a different explainer or class, on one model, all released at once."""
    model = resnet34.module
    x = small_batch[:1]
    jobs = [
        ("GradCAM", 0),
        ("GuidedBackprop", 1),
        ("FeatureMaps", None),
        ("GuidedGradCAM", 3),
        ("CAM", 4),
        ("GradCAM-counterfactual", 5),
        ("GradCAM", 6),
        ("GuidedBackprop", 7),
    ]

    def run(kind, target):
        explainer = build_explainer(kind, model, layers=["layer2", "layer4"], cam_layer="layer4")
        return explain_maps(explainer, x, target)

    sequential = [run(kind, target) for kind, target in jobs]
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list = []

    def worker(i):
        try:
            barrier.wait()
            results[i] = run(*jobs[i])
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for (kind, _), got, expected in zip(jobs, results, sequential):
        assert got.keys() == expected.keys()
        for name in expected:
            assert torch.equal(got[name], expected[name]), f"{kind} {name}"
    assert_no_hooks(model)


def test_predict_and_every_explainer_run_the_model_under_its_lock(resnet34, small_batch):
    """While the forward pass runs, another thread cannot take the model's lock."""
    model = resnet34.module
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(lock_is_free_for_another_thread(module)))
    try:
        resnet34.predict(small_batch[:1])
        for kind in EXPLAINER_NAMES:
            explain_maps(build_explainer(kind, model, layers=["layer4"], cam_layer="layer4"), small_batch[:1], 0)
    finally:
        handle.remove()
    assert seen == [False] * (1 + len(EXPLAINER_NAMES))
    assert lock_is_free_for_another_thread(model)


@pytest.mark.parametrize("kind", EXPLAINER_NAMES)
def test_a_model_that_changes_its_input_in_place_works(kind):
    """A plain forward pass works on a model whose first op is in place; so must explaining."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.ReLU(inplace=True), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected_logits = model(x.clone())
    out = explain_maps(build_explainer(kind, model, layers=["1"], cam_layer="2", fc="5"), x.clone(), 1)
    if "logits" in out:
        assert torch.allclose(out["logits"], expected_logits, atol=1e-6)
    assert_no_hooks(model)

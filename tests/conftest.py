"""Shared fixtures: tiny hand-built models, and the two ImageNet models loaded once per session.

The tiny models are small enough that every value in a test can be worked out by hand; the
session-scoped ``resnet34`` (random weights, seeded) and ``efficientnet`` (the ImageNet weights
installed by pip) are the real architectures, loaded once because loading costs seconds.
No fixture touches the network.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

# The class tally of the pages under test (and of the browser test's server) goes to a scratch folder.
os.environ["GRADCAM_DATA_DIR"] = tempfile.mkdtemp(prefix="gradcam-tests-")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lets a bare `pytest` run from a checkout that is not installed
    sys.path.insert(0, str(ROOT))

import gradcam_core as gc  # noqa: E402
from postgres_server import postgres  # noqa: E402,F401 - the session's one test PostgreSQL, for every module

ASSETS = ROOT / "assets" / "images"
CAT_DOG = ASSETS / "cat_dog.png"


# --------------------------------------------------------------------------------------------
# The fast run and the whole run
# --------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (browsers, real servers, trainings, full evaluations), as CI does")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the slow tests out unless ``--slow`` is given, or a ``-m`` expression chooses for itself."""
    if config.getoption("--slow") or config.option.markexpr:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("--slow") or config.option.markexpr:
        return "every test, the slow ones too"
    return "the fast tests; add --slow for the browser, server, training and full-evaluation tests (CI runs all)"


# --------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------


class TinyCNN(nn.Module):
    """conv -> ReLU(inplace) -> conv -> BN -> ReLU -> GAP -> linear: a GAP head, like ResNet's.

    ``fail_after`` names a layer after which ``forward`` raises ``RuntimeError`` on purpose, once
    that layer's hooks have fired.
    """

    def __init__(self, num_classes: int = 5, fail_after: str | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)
        self.fail_after = fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        if self.fail_after == "relu1":
            raise RuntimeError("forward failed on purpose")
        x = self.relu2(self.bn(self.conv2(x)))
        if self.fail_after == "relu2":
            raise RuntimeError("forward failed on purpose")
        return self.fc(torch.flatten(self.pool(x), 1))


def make_tiny(seed: int = 0, **kwargs) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN(**kwargs)
    with torch.no_grad():  # BN statistics that are not the identity, so BN matters
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def make_tiny_vit(seed: int = 0, **kwargs) -> nn.Module:
    """A timm Vision Transformer for TinyCNN's 8x8 inputs: 2x2 patches (a 4x4 grid and a class
    token), two blocks of two heads, 5 classes, every parameter drawn from N(0, 0.5^2) so that the
    attention is far from uniform."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    options = {"img_size": 8, "patch_size": 2, "embed_dim": 8, "depth": 2, "num_heads": 2, "num_classes": 5}
    model = VisionTransformer(**{**options, **kwargs})
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model.eval()


class OneConvGAP(nn.Module):
    """conv(1 -> 2, 2x2, set weights) -> GAP -> linear(2 -> 2, set weights): Grad-CAM by hand.

    On ``HAND_INPUT`` the conv gives ``A0 = [[2, 5], [0, 2]]`` and ``A1 = [[2, -1], [-1, 3]]``.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [-1.0, 0.0]]]]))
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.3]))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class OneConvFlatten(nn.Module):
    """The same conv -> flatten -> linear(8 -> 2, set weights): no GAP, so not a CAM head."""

    def __init__(self):
        super().__init__()
        self.conv = OneConvGAP().conv
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(
                torch.tensor([[1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
            )
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


#: x = [[1, 2, 0], [0, 1, 3], [2, 0, 1]], one channel, batch 1.
HAND_INPUT = torch.tensor([[[[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0]]]])


class TwoLinearHead(nn.Module):
    """conv -> GAP -> linear -> linear: CAM does not apply."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)
        self.eval()

    def forward(self, x):
        return self.fc(self.hidden(torch.flatten(self.pool(self.conv(x)), 1)))


class SequentialHead(nn.Module):
    """conv -> GAP -> ``fc`` that is an ``nn.Sequential``, not an ``nn.Linear``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(4, 3))
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class FlattenHead(nn.Module):
    """conv -> flatten -> linear on 4x4 maps: CAM does not apply."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


class GuidedMLP(nn.Module):
    """flatten -> linear -> ReLU -> linear -> ReLU -> linear(-> 1), weights set by hand.

    On x = [1, 2]: pre-activations [5, 1] then [4, 7], score -3; the plain input gradient is
    [-3, 0], the guided one [1, 2] (see test_guided.py for the derivation).
    """

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.l1 = nn.Linear(2, 2, bias=False)
        self.r1 = nn.ReLU()
        self.l2 = nn.Linear(2, 2, bias=False)
        self.r2 = nn.ReLU()
        self.l3 = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
            self.l2.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, -3.0]]))
            self.l3.weight.copy_(torch.tensor([[1.0, -1.0]]))
        self.eval()

    def forward(self, x):
        return self.l3(self.r2(self.l2(self.r1(self.l1(self.flatten(x))))))


# --------------------------------------------------------------------------------------------
# Helpers shared by several test files
# --------------------------------------------------------------------------------------------


def hook_counts(model: nn.Module) -> dict[str, int]:
    """Every module-level hook dictionary of every module, with what is left in it."""
    kinds = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
        "_state_dict_hooks",
    )
    left = {}
    for name, module in model.named_modules():
        for kind in kinds:
            hooks = getattr(module, kind, None)
            if hooks:
                left[f"{name or '<root>'}.{kind}"] = len(hooks)
    return left


def assert_no_hooks(model: nn.Module) -> None:
    left = hook_counts(model)
    assert left == {}, f"hooks left on the model: {left}"
    from torch.nn.modules import module as module_mod

    assert not module_mod._global_forward_hooks
    assert not module_mod._global_forward_pre_hooks
    assert not module_mod._global_backward_hooks


def snapshot(model: nn.Module) -> dict:
    """Everything an explainer promises to leave alone."""
    return {
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "values": {name: p.detach().clone() for name, p in model.named_parameters()},
        "buffers": {name: b.clone() for name, b in model.named_buffers()},
        "grads": {
            name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()
        },
        "modules": [(name, id(m)) for name, m in model.named_modules()],
    }


def assert_same_state(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"], "a module was added, removed or swapped"
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for name, value in before["values"].items():
        assert torch.equal(after["values"][name], value), f"parameter {name} changed"
    for name, buffer in before["buffers"].items():
        assert torch.equal(dict(model.named_buffers())[name], buffer), f"buffer {name} changed"
    for name, grad in before["grads"].items():
        if grad is None:
            assert after["grads"][name] is None, f"{name}.grad was None and is now set"
        else:
            assert after["grads"][name] is not None and torch.equal(after["grads"][name], grad), (
                f"{name}.grad changed"
            )


def explain_maps(explainer, x, target=None) -> dict[str, torch.Tensor]:
    """Whatever an explainer returns, as a dict of tensors (for comparisons across calls)."""
    out = explainer(x, target) if not isinstance(explainer, gc.FeatureMaps) else explainer(x)
    if isinstance(out, torch.Tensor):
        return {"input": out}
    if isinstance(out, dict):
        return dict(out)
    maps = {f"map:{k}": v for k, v in out.maps.items()}
    if out.guided is not None:
        maps["guided"] = out.guided
    maps["logits"] = out.logits
    return maps


#: Every explainer, built on a model, with the layer(s) it looks at.
EXPLAINER_NAMES = ["GradCAM", "GradCAM-counterfactual", "CAM", "GuidedBackprop", "GuidedGradCAM", "FeatureMaps"]


def build_explainer(kind: str, model: nn.Module, layers=("conv2",), cam_layer="relu2", fc="fc"):
    layers = list(layers)
    if kind == "GradCAM":
        return gc.GradCAM(model, layers)
    if kind == "GradCAM-counterfactual":
        return gc.GradCAM(model, layers, counterfactual=True)
    if kind == "CAM":
        return gc.CAM(model, cam_layer, fc)
    if kind == "GuidedBackprop":
        return gc.GuidedBackprop(model)
    if kind == "GuidedGradCAM":
        return gc.GuidedGradCAM(model, layers)
    if kind == "FeatureMaps":
        return gc.FeatureMaps(model, layers)
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------------
# Every registered method (gc.METHODS), and counting the passes a call makes
# --------------------------------------------------------------------------------------------

#: Every name in ``gc.METHODS``, for tests parametrized over all the methods.
METHOD_NAMES = list(gc.METHODS)
#: The perturbation methods (Score-CAM, Ablation-CAM, Occlusion): they take ``progress``.
SLOW_METHOD_NAMES = [name for name, method in gc.METHODS.items() if method.slow]
#: Options that keep every method cheap on TinyCNN's 8x8 inputs (occlusion's default 32-pixel
#: window would cover the whole picture).
TINY_OPTIONS = {
    "occlusion": {"window": 4, "stride": 2},
    "integrated_gradients": {"steps": 4},
    "smooth_grad": {"samples": 3},
    "gradient_shap": {"samples": 3},
    "rise": {"masks": 8, "grid": 2},
    "lime": {"samples": 8},
    "kernel_shap": {"samples": 8},
    "extremal_perturbation": {"steps": 4},
}


def build_method(name: str, model: nn.Module, layers=("conv2", "relu2"), **options):
    """``gc.METHODS[name]`` built on ``model`` (CAM takes the last of ``layers``, before GAP)."""
    settings = {**TINY_OPTIONS.get(name, {}), **options}
    return gc.METHODS[name].create(model, list(layers), **settings)


def result_tensors(out) -> dict[str, torch.Tensor]:
    """Every tensor an explainer returns (maps, weights, activations, ...), by a flat name."""
    if isinstance(out, torch.Tensor):
        return {"input": out}
    tensors = {"logits": out.logits, "targets": out.targets}
    for field in ("maps", "weights", "activations", "cams"):
        tensors.update({f"{field}:{k}": v for k, v in getattr(out, field).items()})
    if out.guided is not None:
        tensors["guided"] = out.guided
    return tensors


@contextmanager
def count_calls(*modules: nn.Module) -> Iterator[list[int]]:
    """``counts[i]``: how many times ``modules[i]`` ran its forward inside the block."""
    counts = [0] * len(modules)

    def counter(i):
        def hook(module, args):
            counts[i] += 1

        return hook

    handles = [m.register_forward_pre_hook(counter(i)) for i, m in enumerate(modules)]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def gap_head(model: nn.Module, layer: str, fc: str, x: torch.Tensor, targets) -> tuple:
    """What the closed forms at a ``layer -> GAP -> fc`` head need, computed without the package.

    Returns ``A`` (N, K, h, w) the layer's output, ``w`` (N, K) the fc row of each sample's
    target class, ``mean`` (N, K) = GAP(A), and ``y`` (N,) the target logits.
    """
    modules = dict(model.named_modules())
    seen = {}
    handle = modules[layer].register_forward_hook(lambda m, i, o: seen.update(a=o.detach().clone()))  # returns None
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    targets = torch.as_tensor(targets).expand(x.shape[0])
    a = seen["a"]
    w = modules[fc].weight.detach()[targets]
    mean = a.mean(dim=(2, 3))
    y = logits.gather(1, targets[:, None])[:, 0]
    # the head really is fc(GAP(A)), so the closed forms apply
    torch.testing.assert_close(modules[fc](mean), logits)
    return a, w, mean, y


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny() -> TinyCNN:
    return make_tiny()


@pytest.fixture
def tiny_vit() -> nn.Module:
    return make_tiny_vit()


@pytest.fixture
def tiny_input() -> torch.Tensor:
    g = torch.Generator().manual_seed(10)
    return torch.randn(3, 3, 8, 8, generator=g)


@pytest.fixture(scope="session")
def resnet34() -> gc.Classifier:
    """ResNet34 with random (seeded) weights; never touches the network or disk."""
    torch.manual_seed(34)
    clf = gc.load_model("resnet34", pretrained=False)
    return clf


@pytest.fixture(scope="session")
def efficientnet() -> gc.Classifier:
    """EfficientNet-Lite0 with the ImageNet weights installed by pip (offline)."""
    return gc.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def small_batch() -> torch.Tensor:
    """Three 64x64 inputs for ResNet34 where resolution does not matter (layer4 is 2x2)."""
    g = torch.Generator().manual_seed(64)
    return torch.randn(3, 3, 64, 64, generator=g)


@pytest.fixture(scope="session")
def cat_dog_x(efficientnet) -> torch.Tensor:
    return efficientnet.preprocess(CAT_DOG)


@pytest.fixture(scope="session")
def shapes_gap() -> gc.Classifier:
    """The shapes lab's GAP network with its shipped weights (assets/models, no network)."""
    return gc.load_model("shapes_gap")


@pytest.fixture(scope="session")
def shapes_gap64(shapes_gap) -> nn.Module:
    """A float64 copy of ``shapes_gap``: closed forms at its GAP head then hold to ~1e-12, where
    float32 rounding of 128-channel sums would leave ~1e-6 of noise."""
    return copy.deepcopy(shapes_gap.module).double().eval()


@pytest.fixture(scope="session")
def shapes_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Four rendered 64x64 shapes pictures (normalized) and their labels."""
    from gradcam_core import shapes

    batch = shapes.render(4, seed=3)
    return batch.images, batch.labels

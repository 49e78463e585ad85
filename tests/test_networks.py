"""Your own network: torchvision and timm architectures by name, checkpoints, and structure found by one pass.

Every network here has random weights and small inputs; nothing touches the network (the tests
that could download would fail on a socket that refuses to connect).
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket

import pytest
import torch
import torchvision
from torch import nn

import gradcam_core as gc
import gradcam_core.models as models
from gradcam_core.architecture import find_structure


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def torch_home(monkeypatch, tmp_path):
    """An empty torch hub cache and Hugging Face cache of this test's own."""
    import huggingface_hub.constants

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() follows TORCH_HOME
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return home


def _x(size: int | tuple[int, int], seed: int = 0) -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else size
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# Every family: stages found, Grad-CAM at every stage, CAM where the head allows it
# --------------------------------------------------------------------------------------------

# name, input side, where CAM refuses (a phrase of its reason), or None where CAM applies
FAMILIES = [
    ("torchvision:resnet18", 64, None),
    ("torchvision:resnext50_32x4d", 64, None),
    ("torchvision:wide_resnet50_2", 64, None),
    ("torchvision:vgg11", 64, "has other layers"),  # VGG: 7x7 pooling, flatten, three linear layers
    ("torchvision:densenet121", 64, "differ from it"),  # a functional ReLU after features.norm5
    ("torchvision:mobilenet_v2", 64, None),
    ("torchvision:mobilenet_v3_small", 64, "has other layers"),  # linear -> Hardswish -> linear
    ("torchvision:efficientnet_b0", 64, None),
    ("torchvision:efficientnet_v2_s", 64, None),
    ("torchvision:regnet_x_400mf", 64, None),
    ("torchvision:convnext_tiny", 64, "differ from it"),  # LayerNorm between pooling and the linear layer
    ("torchvision:shufflenet_v2_x0_5", 64, None),
    ("torchvision:squeezenet1_1", 64, "found Conv2d"),  # the classifier is a 1x1 convolution
    ("torchvision:googlenet", 64, None),
    ("torchvision:inception_v3", 107, None),  # 75 pixels at least; 107 leaves 2x2 maps
    ("timm:convnext_tiny", 64, "differ from it"),
    ("timm:resnet18", 64, None),
]


@pytest.mark.parametrize("name, side, refusal", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_gives_grad_cam_at_every_stage_and_cam_where_its_head_allows(name, side, refusal, no_network):
    check_family(name, side, refusal)


@pytest.mark.slow
@pytest.mark.parametrize("name, refusal", [(f[0], f[2]) for f in FAMILIES], ids=[f[0] for f in FAMILIES])
def test_every_family_at_its_own_input_size(name, refusal, no_network):
    check_family(name, None, refusal)


def check_family(name: str, side: int | None, refusal: str | None) -> None:
    """Stages that shrink, Grad-CAM at each of them, and CAM or its refusal, on ``side`` pixels (by
    default the architecture's own input size)."""
    torch.manual_seed(0)
    clf = gc.load_model(name, input_size=side)
    assert "random weights" in clf.description and not clf.module.training
    assert len(clf.categories) == 1000 and clf.categories[1] == "goldfish"
    side = side or clf.input_size[0]
    assert clf.input_size == (side, side)
    assert len(clf.stages) >= 4 and clf.cam_layer == clf.stages[-1]
    assert isinstance(clf.module.get_submodule(clf.fc), (nn.Linear, nn.Conv2d))
    assert clf.blocks[-1] == clf.cam_layer or clf.blocks[-1].startswith(f"{clf.cam_layer}.")

    x = _x(side)
    activations = gc.FeatureMaps(clf.module, clf.stages)(x)
    sides = [tuple(a.shape[-2:]) for a in activations.values()]
    assert all(b[0] * b[1] < a[0] * a[1] for a, b in itertools.pairwise(sides)), sides  # each stage smaller
    maps = gc.GradCAM(clf.module, clf.stages)(x, target=3).maps
    for stage, a in activations.items():
        assert maps[stage].shape == (1, *a.shape[-2:]) and torch.isfinite(maps[stage]).all()

    if refusal is None:
        cam = gc.CAM(clf.module, clf.cam_layer, clf.fc)(x, target=3).maps[clf.cam_layer]
        assert cam.shape == maps[clf.cam_layer].shape
    else:
        with pytest.raises(ValueError, match=refusal):
            gc.CAM(clf.module, clf.cam_layer, clf.fc)(x, target=3)


def test_structure_of_torchvision_resnet_and_timm_convnext():
    resnet = find_structure(torchvision.models.resnet18(), (64, 64))
    assert resnet.stages == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert resnet.sides == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert (resnet.cam_layer, resnet.fc, resnet.cam_refusal, resnet.num_classes) == ("layer4", "fc", None, 1000)
    assert resnet.blocks == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    vgg = find_structure(torchvision.models.vgg11(), (64, 64))
    assert vgg.stages[-1] == vgg.cam_layer == "features.20" and vgg.fc == "classifier.6"
    assert vgg.blocks == vgg.stages  # single layers: no finer units
    import timm

    convnext = find_structure(timm.create_model("convnext_tiny"), (64, 64))
    assert convnext.stages == ["stages.0", "stages.1", "stages.2", "stages.3"] and convnext.fc == "head.fc"
    assert "stages.1.blocks.2" in convnext.blocks
    assert "differ from it" in convnext.cam_refusal


def test_the_lesson_models_keep_their_names_and_layers():
    clf = gc.load_model("resnet34", pretrained=False)
    assert clf.name == "resnet34" and clf.stages == ["layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(ValueError, match="torchvision:resnet34"):
        gc.load_model("resnet34", pretrained=False, categories=["a", "b"])


def test_unknown_architectures_are_refused_with_close_names():
    with pytest.raises(ValueError, match="did you mean resnet50"):
        gc.load_model("torchvision:resnet5")
    with pytest.raises(ValueError, match="convnext_tiny"):
        gc.load_model("timm:convnxt_tiny")
    with pytest.raises(ValueError, match="torchvision:<name>"):
        gc.load_model("keras:resnet50")


def test_the_size_of_an_architecture_is_counted_without_building_it():
    assert models.parameter_count("torchvision:resnet18") == 11_689_512
    assert models.parameter_count("timm:vit_giant_patch14_dinov2") > 10**9  # on the meta device: no memory
    with pytest.raises(ValueError, match="Unknown source"):
        models.parameter_count("resnet18")


def test_preprocessing_defaults_come_from_the_architecture(no_network):
    assert gc.load_model("torchvision:inception_v3").input_size == (299, 299)
    lite = gc.load_model("timm:tf_efficientnet_lite0", input_size=64)
    assert lite.mean == (0.5, 0.5, 0.5)  # timm's data config for TensorFlow's weights
    clf = gc.load_model("torchvision:resnet18", input_size=(48, 80), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert clf.input_size == (48, 80) and clf.preprocess(torch.zeros(60, 70, 3).byte().numpy()).shape == (1, 3, 48, 80)
    assert clf.module.input_normalization == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@pytest.fixture
def student_resnet(tmp_path):
    """A ResNet18 fine-tuned (here: seeded at random) for three classes, and its saved state dict."""
    torch.manual_seed(4)
    net = torchvision.models.resnet18(num_classes=3).eval()
    path = tmp_path / "ckpt.pth"
    torch.save(net.state_dict(), path)
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n\nbird\n")
    return net, path, names


def test_a_saved_checkpoint_gives_the_same_maps(student_resnet, no_network):
    net, path, names = student_resnet
    clf = gc.load_model("torchvision:resnet18", weights=path, categories=names, input_size=64)
    assert clf.categories == ["cat", "dog", "bird"] and "weights from ckpt.pth" in clf.description
    x = _x(64, seed=1)
    for method in (gc.GradCAM(clf.module, clf.stages), gc.CAM(clf.module, clf.cam_layer, clf.fc)):
        reference = type(method)(net, *([clf.stages] if isinstance(method, gc.GradCAM) else [clf.cam_layer, clf.fc]))
        got, expected = method(x, target=2).maps, reference(x, target=2).maps
        assert got.keys() == expected.keys()
        for layer in got:
            torch.testing.assert_close(got[layer], expected[layer], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_sets_the_number_of_classes_and_accepts_its_usual_wrappings(student_resnet, tmp_path):
    net, path, _ = student_resnet
    clf = gc.load_model("torchvision:resnet18", weights=path.read_bytes(), input_size=64)
    assert clf.categories == ["class 0", "class 1", "class 2"] and "the uploaded checkpoint" in clf.description
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, wrapped)
    with open(wrapped, "rb") as file:
        again = gc.load_model("torchvision:resnet18", weights=file, input_size=64)
    torch.testing.assert_close(again.module.fc.weight, net.fc.weight)
    with pytest.raises(ValueError, match=r"ckpt.pth has 3 classes \(fc\), but 2 class names"):
        gc.load_model("torchvision:resnet18", weights=path, categories=["cat", "dog"], input_size=64)


def test_a_checkpoint_of_another_architecture_names_the_keys_that_do_not_fit(student_resnet, tmp_path):
    _, path, names = student_resnet
    with pytest.raises(ValueError) as info:
        gc.load_model("torchvision:resnet34", weights=path, categories=names, input_size=64)
    message = str(info.value)
    assert "does not fit torchvision's resnet34" in message and "missing, e.g. layer1.2.conv1.weight" in message
    state = torch.load(path, weights_only=True)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bent.pth")
    with pytest.raises(ValueError) as info:
        gc.load_model("torchvision:resnet18", weights=tmp_path / "bent.pth", input_size=64)
    message = str(info.value)
    assert "1 unexpected, e.g. extra.weight" in message
    assert "layer1.0.conv1.weight (file (64, 64, 5, 5), model (64, 64, 3, 3))" in message


class Pwned:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle", "pickle protocol 2", "inside a state dict"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(how, tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save(Pwned(marker), path)
    elif how.startswith("pickle"):
        path.write_bytes(pickle.dumps(Pwned(marker), protocol=2 if how.endswith("2") else None))
    else:
        torch.save({"fc.weight": torch.zeros(3, 512), "fc.bias": Pwned(marker)}, path)
    for source in (path, path.read_bytes()):
        with pytest.raises(ValueError, match="refused without running them|not a PyTorch checkpoint"):
            gc.load_model("torchvision:resnet18", weights=source, input_size=64)
    assert not marker.exists()


def test_files_that_are_not_state_dicts_are_refused_clearly(tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(torchvision.models.resnet18(num_classes=2), whole)
    with pytest.raises(ValueError, match=r"model.state_dict\(\)"):
        models.read_state_dict(whole)
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        models.read_state_dict(tmp_path / "notes.txt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="keys 'epoch', 'lr', not a state dict"):
        models.read_state_dict(tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="no checkpoint file"):
        models.read_state_dict(tmp_path / "missing.pth")


# --------------------------------------------------------------------------------------------
# Pretrained weights: from the cache only, never downloaded
# --------------------------------------------------------------------------------------------


def test_pretrained_weights_come_from_the_cache_or_not_at_all(torch_home, no_network):
    clf = gc.load_model("torchvision:resnet18", input_size=64)
    assert "random weights" in clf.description and "never downloaded" in clf.description
    assert "random weights" in gc.load_model("timm:resnet18", input_size=64).description
    # a file in the cache under the weights' own name is taken (here: seeded random weights)
    torch.manual_seed(5)
    cached = torchvision.models.resnet18().state_dict()
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    target = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True)
    torch.save(cached, target)
    clf = gc.load_model("torchvision:resnet18", input_size=64)
    assert "IMAGENET1K_V1 weights (from the torch cache)" in clf.description
    torch.testing.assert_close(clf.module.conv1.weight, cached["conv1.weight"])
    assert "random weights" in gc.load_model("torchvision:resnet18", pretrained=False, input_size=64).description
    # timm: the same, from its own file name (read by timm with weights_only=True, never from the hub)
    import timm

    url = timm.models.get_pretrained_cfg("resnet18").url
    torch.save(cached, target.with_name(url.rsplit("/", 1)[-1]))
    clf = gc.load_model("timm:resnet18", input_size=64)
    assert "timm's pretrained weights a1_in1k (from the cache)" in clf.description
    torch.testing.assert_close(clf.module.conv1.weight, cached["conv1.weight"])


# --------------------------------------------------------------------------------------------
# A network of one's own
# --------------------------------------------------------------------------------------------


class StudentNet(nn.Module):
    """Two conv blocks (conv, ReLU, pool), a third conv, then a head given by ``head``."""

    def __init__(self, head: str = "gap", classes: int = 4):
        super().__init__()
        block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block1, self.block2 = block(3, 8), block(8, 16)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.head = head
        if head == "gap":
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                            nn.Linear(16, classes))
        else:
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x):
        a = self.conv3(self.block2(self.block1(x)))
        return self.classifier(torch.relu(a) if self.head == "fc" else a)


def test_from_module_finds_a_students_network():
    clf = gc.Classifier.from_module(StudentNet(), input_size=32, categories=["a", "b", "c", "d"], name="mine")
    # the last module at each resolution: block2 and conv3 are both 8x8
    assert (clf.name, clf.stages, clf.cam_layer, clf.fc) == ("mine", ["block1", "conv3"], "conv3", "classifier.3")
    assert clf.blocks == ["block1", "block2", "conv3"]
    assert "CAM applies" in clf.description and not clf.module.training
    x = _x(32)
    cam = gc.CAM(clf.module, clf.cam_layer, clf.fc)(x, target=1).maps["conv3"]
    grad_cam = gc.GradCAM(clf.module, [clf.cam_layer])(x, target=1).maps["conv3"]
    # at a GAP head CAM and Grad-CAM agree up to the factor 1/(h w)
    torch.testing.assert_close(cam / 64, grad_cam, rtol=1e-4, atol=1e-6)

    flat = gc.Classifier.from_module(StudentNet(head="fc"), input_size=32)
    assert flat.fc == "classifier.3" and flat.categories == ["class 0", "class 1", "class 2", "class 3"]
    assert "CAM does not apply" in flat.description
    with pytest.raises(ValueError, match="has other layers"):  # flatten -> linear -> ReLU -> linear
        gc.CAM(flat.module, flat.cam_layer, flat.fc)(x, target=0)


class Hourglass(nn.Module):
    """Down, then up again before the head: no single 'last map before pooling' ordering by size."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.conv = nn.Conv2d(8, 8, 3, stride=4, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.conv(self.up(self.down(x))).mean(dim=(2, 3)))


def test_a_network_it_cannot_read_is_refused_and_layers_can_be_named():
    with pytest.raises(ValueError, match=r"down \(16x16\), up \(32x32\), conv \(8x8\).*stages=\["):
        gc.Classifier.from_module(Hourglass(), input_size=32)
    clf = gc.Classifier.from_module(Hourglass(), input_size=32, stages=["down", "conv"])
    assert (clf.stages, clf.cam_layer, clf.fc) == (["down", "conv"], "conv", "fc")
    assert gc.CAM(clf.module, clf.cam_layer, clf.fc)(_x(32), target=1).maps["conv"].shape == (1, 8, 8)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        gc.Classifier.from_module(Hourglass(), input_size=32, cam_layer="nope")


def test_what_is_not_a_cnn_classifier_is_refused():
    with pytest.raises(ValueError, match="no module that gives feature maps"):
        gc.Classifier.from_module(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), input_size=8)
    with pytest.raises(ValueError, match="must return logits"):
        gc.Classifier.from_module(nn.Sequential(nn.Conv2d(3, 2, 3)), input_size=8)
    with pytest.raises(ValueError, match="fails on a 16x16 picture"):
        gc.Classifier.from_module(StudentNet(head="fc"), input_size=16)  # its flatten head takes 32x32 only

"""gradcam_core.models: the two ImageNet classifiers, preprocessing, and offline weight handling.

Nothing here touches the network: every download goes to a local ``file://`` URL or to a
``urlopen`` replaced by one that raises ``URLError``.
"""

from __future__ import annotations

import hashlib
import io
import os
import types
import urllib.error

import numpy as np
import pytest
import torch
from conftest import CAT_DOG
from PIL import Image

import gradcam_core as gc
import gradcam_core.models as models

# --------------------------------------------------------------------------------------------
# The classifiers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["resnet34", "efficientnet"])
def test_classifier_description(fixture, request):
    clf = request.getfixturevalue(fixture)
    assert clf.name == {"resnet34": "resnet34", "efficientnet": "efficientnet_lite0"}[fixture]
    assert clf.stages == ["layer1", "layer2", "layer3", "layer4"]
    assert clf.cam_layer == "layer4"
    assert clf.fc == "fc"
    assert clf.input_size == (224, 224)
    assert len(clf.categories) == 1000
    assert clf.categories[243] == "bull mastiff"
    assert clf.categories[282] == "tiger cat"
    assert clf.categories[967] == "espresso"
    names = dict(clf.module.named_modules())
    for layer in clf.stages + [clf.fc]:
        assert layer in names
    assert isinstance(names[clf.fc], torch.nn.Linear) and names[clf.fc].out_features == 1000
    assert not any(m.training for m in clf.module.modules()), "not in eval mode"
    assert clf.description


def test_resnet34_random_weights_say_so(resnet34):
    assert "random" in resnet34.description
    assert isinstance(resnet34.module, torch.nn.Module)


def test_cam_applies_to_both_heads(resnet34, efficientnet):
    # the declared cam_layer and fc really are "last conv stage -> GAP -> one linear"
    x = torch.randn(1, 3, 64, 64)
    for clf in (resnet34, efficientnet):
        r = gc.CAM(clf.module, clf.cam_layer, clf.fc)(x, target=0)
        assert r.maps[clf.cam_layer].shape == (1, 2, 2)


def test_unknown_model_name():
    with pytest.raises(ValueError) as info:
        gc.load_model("vgg16")
    message = str(info.value)
    assert "'vgg16'" in message
    for name in gc.MODELS:
        assert name in message


def test_load_model_gives_eval_mode_and_no_gradients_written():
    clf = gc.load_model("efficientnet_lite0", pretrained=False)
    assert not clf.module.training
    assert all(p.grad is None for p in clf.module.parameters())
    assert "random" in clf.description


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0: the wrapper computes what timm computes
# --------------------------------------------------------------------------------------------


def test_wrapper_equals_timm_with_random_weights():
    import timm

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    wrapper = models.EfficientNetLite(net).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = net(x)
        got = wrapper(x)
        features = net.forward_features(x)
        layer4 = wrapper.layer4(wrapper.layer3(wrapper.layer2(wrapper.layer1(wrapper.stem(x)))))
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(layer4, features, rtol=1e-5, atol=1e-6)


def test_wrapper_equals_timm_with_the_installed_imagenet_weights(efficientnet):
    """Copy the loaded wrapper's weights into a fresh timm model, tensor by tensor in order, and
    run timm's own forward: it must give the same logits."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    theirs = net.state_dict()
    ours = efficientnet.module.state_dict()
    assert len(theirs) == len(ours)
    for (name_t, t), (name_o, o) in zip(theirs.items(), ours.items()):
        assert t.shape == o.shape, (name_t, name_o)
        assert name_t.split(".")[-1] == name_o.split(".")[-1], (name_t, name_o)
    net.load_state_dict(dict(zip(theirs, ours.values())))
    x = efficientnet.preprocess(CAT_DOG)
    with torch.no_grad():
        expected = net(x)
        got = efficientnet.module(x)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert int(got.argmax()) == int(expected.argmax())


# --------------------------------------------------------------------------------------------
# Real pictures
# --------------------------------------------------------------------------------------------


def _skimage(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return getattr(data, name)()


def test_chelsea_is_a_cat(efficientnet):
    probabilities = efficientnet.predict(efficientnet.preprocess(_skimage("chelsea")))
    assert probabilities.shape == (1, 1000)
    top1 = efficientnet.categories[int(probabilities.argmax())]
    assert top1 in ("Egyptian cat", "tabby", "tiger cat")


def test_coffee_is_an_espresso(efficientnet):
    probabilities = efficientnet.predict(efficientnet.preprocess(_skimage("coffee")))
    assert efficientnet.categories[int(probabilities.argmax())] == "espresso"


def test_predict_is_a_softmax_without_a_graph(efficientnet, cat_dog_x):
    p = efficientnet.predict(cat_dog_x.expand(2, -1, -1, -1))
    assert torch.allclose(p.sum(dim=1), torch.ones(2), atol=1e-5)
    assert p.grad_fn is None and (p >= 0).all()
    assert torch.allclose(p[0], p[1], atol=1e-6)
    top2 = [efficientnet.categories[i] for i in p[0].topk(2).indices]
    assert top2[0] == "bull mastiff"


# --------------------------------------------------------------------------------------------
# preprocess
# --------------------------------------------------------------------------------------------


def test_preprocess_accepts_every_source(efficientnet):
    picture = Image.open(CAT_DOG).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    sources = [str(CAT_DOG), CAT_DOG, buffer.getvalue(), picture, np.asarray(picture)]
    outs = [efficientnet.preprocess(source) for source in sources]
    for out in outs:
        assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
        assert torch.equal(out, outs[0])


def test_preprocess_normalization_by_hand(resnet34, efficientnet):
    # EfficientNet-Lite0: (v / 255 - 127 / 255) / (128 / 255) = (v - 127) / 128
    grey = np.full((50, 70, 3), 127, np.uint8)
    white = np.full((50, 70, 3), 255, np.uint8)
    assert torch.allclose(efficientnet.preprocess(grey), torch.zeros(1, 3, 224, 224), atol=1e-6)
    assert torch.allclose(efficientnet.preprocess(white), torch.ones(1, 3, 224, 224), atol=1e-6)
    # ResNet34: ImageNet mean and std; white is (1 - mean) / std per channel
    expected = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    out = resnet34.preprocess(white)
    assert torch.allclose(out[0, :, 100, 100], expected, atol=1e-5)
    assert torch.allclose(out, expected.view(1, 3, 1, 1).expand(1, 3, 224, 224), atol=1e-5)


def test_preprocess_resizes_the_whole_picture_without_cropping(efficientnet):
    # 300 x 100: left third red, right third blue. A centre crop would lose both; a resize of the
    # whole picture keeps red on the left third and blue on the right third.
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, :100] = (255, 0, 0)
    a[:, 200:] = (0, 0, 255)
    x = efficientnet.preprocess(a)
    assert x.shape == (1, 3, 224, 224)
    one = (255 - 127) / 128
    low = (0 - 127) / 128
    assert torch.allclose(x[0, :, 112, 20], torch.tensor([one, low, low]), atol=1e-5)
    assert torch.allclose(x[0, :, 112, 203], torch.tensor([low, low, one]), atol=1e-5)


def test_preprocess_refuses_what_load_image_refuses(efficientnet):
    with pytest.raises(ValueError, match="empty"):
        efficientnet.preprocess(b"")


# --------------------------------------------------------------------------------------------
# Weights: offline behaviour, downloads from a local file
# --------------------------------------------------------------------------------------------


@pytest.fixture
def torch_home(monkeypatch, tmp_path):
    """An empty torch hub cache of this test's own."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # get_dir() follows TORCH_HOME
    return home


@pytest.fixture
def offline(monkeypatch, torch_home):
    """An empty torch hub cache and a urlopen that always fails as it does without a network."""
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(models.urllib.request, "urlopen", no_network)
    return types.SimpleNamespace(home=torch_home, calls=calls)


def test_resnet34_without_weights_or_network_raises_weights_unavailable(offline):
    with pytest.raises(gc.WeightsUnavailableError) as info:
        gc.load_model("resnet34")
    message = str(info.value)
    checkpoints = offline.home / "hub" / "checkpoints"
    assert "resnet34-b627a593.pth" in message
    assert str(checkpoints) in message
    assert "efficientnet_lite0" in message  # the way out
    assert len(offline.calls) == 1 and offline.calls[0].endswith("resnet34-b627a593.pth")
    assert list(checkpoints.iterdir()) == []  # no partial file left


def test_weights_path_follows_torch_home(offline):
    assert models.weights_path("resnet34") == offline.home / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    with pytest.raises(ValueError):
        models.weights_path("efficientnet_lite0")


def test_pretrained_false_never_downloads(offline):
    clf = gc.load_model("resnet34", pretrained=False)
    assert offline.calls == []
    assert not clf.module.training


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "served" / "weights.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(200_000))
    return path


def test_download_with_a_wrong_hash_leaves_nothing(torch_home, small_file):
    # the real urlopen, reading a local file:// URL
    progress = []
    with pytest.raises(gc.WeightsUnavailableError) as info:
        gc.download_weights("resnet34", progress=lambda done, total: progress.append((done, total)), url=small_file.as_uri())
    assert "b627a593" in str(info.value) and "damaged" in str(info.value)
    checkpoints = torch_home / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []  # neither the partial file nor the target
    assert progress, "the progress callback was never called"
    assert progress[-1] == (200_000, 200_000)
    assert all(0 < done <= total for done, total in progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_download_with_the_right_hash_lands_in_the_cache(torch_home, small_file, monkeypatch):
    prefix = hashlib.sha256(small_file.read_bytes()).hexdigest()[:8]
    # a weights entry whose file name carries the served file's hash, as torchvision's do
    fake = types.SimpleNamespace(url=f"https://example.invalid/models/resnet34-{prefix}.pth")
    monkeypatch.setattr(models, "_weights", lambda name: fake)
    progress = []
    target = gc.download_weights("resnet34", progress=lambda d, t: progress.append((d, t)), url=small_file.as_uri())
    assert target == torch_home / "hub" / "checkpoints" / f"resnet34-{prefix}.pth"
    assert target.read_bytes() == small_file.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no .partial left
    assert progress[-1] == (200_000, 200_000)

    # a second call finds it cached and never opens a URL
    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(models.urllib.request, "urlopen", no_network)
    assert gc.download_weights("resnet34") == target


def test_download_from_a_missing_local_file(torch_home, tmp_path):
    with pytest.raises(gc.WeightsUnavailableError, match="resnet34-b627a593.pth"):
        gc.download_weights("resnet34", url=(tmp_path / "missing.pth").as_uri())
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_failed_download_leaks_no_file_descriptor(offline):
    before = _open_fds()
    for _ in range(5):
        with pytest.raises(gc.WeightsUnavailableError):
            gc.download_weights("resnet34")
    assert _open_fds() == before


def test_cached_pretrained_looks_in_the_caches_only(offline, monkeypatch, tmp_path):
    """Whether load_model would find pretrained weights: the torch cache for torchvision, the Hugging Face
    cache (or timm's own file name in the torch cache) for timm; the model is never built, nothing downloaded."""
    import huggingface_hub.constants
    import timm
    import torchvision
    from safetensors.torch import save_file

    hf = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    assert not models.cached_pretrained("torchvision:resnet18")
    assert not models.cached_pretrained("timm:deit_tiny_patch16_224")
    for bad in ("resnet34", "keras:resnet50", "timm:no_such_net"):
        with pytest.raises(ValueError):
            models.cached_pretrained(bad)

    # torchvision: the default weights' file under TORCH_HOME
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    checkpoints = offline.home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / url.rsplit("/", 1)[-1]).write_bytes(b"")
    assert models.cached_pretrained("torchvision:resnet18")

    # timm: a snapshot of the default tag's Hugging Face repo, as timm.create_model(..., pretrained=True) leaves it
    state = timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict()
    repo = hf / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(state, repo / "snapshots" / "0123abcd" / "model.safetensors")

    def not_built(*args, **kwargs):
        raise AssertionError("the model was built")

    with monkeypatch.context() as m:
        m.setattr(timm, "create_model", not_built)
        assert models.cached_pretrained("timm:deit_tiny_patch16_224")
        assert not models.cached_pretrained("timm:vit_tiny_patch16_224")  # another repo
    # and load_model does find them there
    clf = gc.load_model("timm:deit_tiny_patch16_224")
    assert "timm's pretrained weights fb_in1k (from the cache)" in clf.description
    # a ViT's layers are its blocks' norm1: four stages evenly spaced, the last one explained
    assert clf.stages == ["blocks.2.norm1", "blocks.5.norm1", "blocks.8.norm1", "blocks.11.norm1"]
    assert (clf.cam_layer, clf.fc, len(clf.blocks), len(clf.categories)) == ("blocks.11.norm1", "head", 12, 1000)
    torch.testing.assert_close(clf.module.cls_token, state["cls_token"])
    assert offline.calls == []


def test_efficientnet_lite2_has_the_same_stages_at_260_pixels():
    clf = gc.load_model("efficientnet_lite2")
    assert clf.input_size == (260, 260) and clf.stages == ["layer1", "layer2", "layer3", "layer4"]
    assert "77.6% top-1" in clf.description and not clf.module.training
    x = clf.preprocess(_skimage("chelsea"))
    sides = {layer: a.shape[-1] for layer, a in gc.FeatureMaps(clf.module, clf.stages)(x).items()}
    assert sides == {"layer1": 65, "layer2": 33, "layer3": 17, "layer4": 9}
    top1 = clf.categories[int(clf.predict(x).argmax())]
    assert top1 in {"Egyptian cat", "tabby", "tiger cat"}


def test_efficientnet_lite2_wrapper_equals_timm_with_random_weights():
    import timm

    torch.manual_seed(2)
    net = timm.create_model("tf_efficientnet_lite2", pretrained=False).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(models.EfficientNetLite(net).eval()(x), net(x))


@pytest.mark.parametrize("name, count, first, last", [
    ("resnet34", 16, "layer1.0", "layer4.2"),
    ("efficientnet_lite0", 17, "layer1.0.0", "layer4"),
    ("efficientnet_lite2", 22, "layer1.0.0", "layer4"),
    ("shapes_gap", 4, "layer1", "layer4"),
])
def test_every_model_lists_its_blocks_in_order(name, count, first, last):
    clf = gc.load_model(name, pretrained=False)
    assert len(clf.blocks) == count and clf.blocks[0] == first and clf.blocks[-1] == last
    names = dict(clf.module.named_modules())
    assert all(block in names for block in clf.blocks)
    order = list(names)
    inner = [b for b in clf.blocks if b not in clf.stages]  # a stage's name comes before its blocks'
    assert [order.index(b) for b in inner] == sorted(order.index(b) for b in inner)


def test_grad_cam_at_every_block_equals_grad_cam_block_by_block(resnet34):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    every = gc.GradCAM(resnet34.module, resnet34.blocks)(x, target=7)
    for block in resnet34.blocks:
        alone = gc.GradCAM(resnet34.module, [block])(x, target=7)
        torch.testing.assert_close(every.maps[block], alone.maps[block], rtol=1e-5, atol=1e-6)

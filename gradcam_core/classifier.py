"""What the explainers and the pages need to know about a classifier, whatever loads it.

:mod:`gradcam_core.models` and :mod:`gradcam_core.shapes` both build :class:`Classifier` objects;
this module depends on neither, so the model registry can import the shapes lab and not the
other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from .hooks import exclusive_eval
from .images import ImageSource, load_image

__all__ = ["Classifier", "ProgressCallback", "WeightsUnavailableError"]

ProgressCallback = Callable[[int, int], None]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable (no network)."""


@dataclass(frozen=True, eq=False)
class Classifier:
    """A CNN classifier and what the explainers and pages need to know about it.

    Attributes:
        name: the name given to :func:`load_model`.
        module: the ``nn.Module``, in eval mode.
        categories: class names, indexed by class.
        stages: ordered layer names for the layer-by-layer view, early to late.
        cam_layer: the last convolutional stage, the one followed by global average pooling.
        fc: the name of the linear head.
        input_size: ``(H, W)`` that :meth:`preprocess` resizes to.
        mean, std: per-channel normalization of RGB values in [0, 1].
        description: one line for people: the architecture and where the weights come from.
        blocks: the blocks, early to late, for Grad-CAM at every depth: each residual or MBConv
            block of an ImageNet model, each stage of a shapes network (the default: ``stages``).
    """

    name: str
    module: nn.Module
    categories: list[str]
    stages: list[str]
    cam_layer: str
    fc: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str
    blocks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.blocks:
            object.__setattr__(self, "blocks", list(self.stages))

    @classmethod
    def from_module(cls, module: nn.Module, **keywords) -> Classifier:
        """A classifier around a network of one's own, its stages, CAM layer and ``fc`` found by one
        forward pass: :func:`gradcam_core.models.classifier_from_module`, which lists the keywords
        (``input_size``, ``mean``, ``std``, ``categories``, ``name``; ``stages``, ``cam_layer``,
        ``fc`` where the forward pass cannot tell).

        Example:
            >>> clf = Classifier.from_module(MyNet(), input_size=64, categories=["circle", "square"])
        """
        from .models import classifier_from_module  # the models build classifiers, not the other way

        return classifier_from_module(module, **keywords)

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """Any image source -> ``(1, 3, H, W)`` float tensor, normalized as the model was trained.

        The whole picture is resized to ``input_size`` (no crop), so a map upsampled to the
        picture's own size lines up with it pixel for pixel.
        """
        rgb = load_image(image).resize(self.input_size[::-1], Image.BICUBIC)
        x = torch.from_numpy(np.array(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std).unsqueeze(0)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, classes)`` softmax probabilities, under the model's lock (hooks of concurrent
        explanations must not see this pass)."""
        with exclusive_eval(self.module), torch.no_grad():
            return self.module(x).softmax(dim=1)

"""One file a method; each adds to :class:`~.base.LayerExplainer` only how it weighs channels."""

from .activations import FeatureMaps
from .base import LayerExplainer, Result, Target
from .cam import CAM
from .grad_cam import GradCAM
from .guided import GuidedBackprop, GuidedGradCAM

__all__ = [
    "CAM",
    "FeatureMaps",
    "GradCAM",
    "GuidedBackprop",
    "GuidedGradCAM",
    "LayerExplainer",
    "Result",
    "Target",
]

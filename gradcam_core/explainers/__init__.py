"""One file a method; each adds to the base classes only how it weighs activations and gradients."""

from .ablation_cam import AblationCAM
from .activations import FeatureMaps
from .base import (
    Explainer,
    InputExplainer,
    LayerExplainer,
    Needs,
    Pass,
    Result,
    Target,
    run,
)
from .cam import CAM
from .deconvnet import Deconvnet
from .eigen_cam import EigenCAM
from .explain import explain
from .grad_cam import GradCAM
from .grad_cam_plus_plus import GradCAMPlusPlus
from .guided import GuidedBackprop, GuidedGradCAM
from .hires_cam import HiResCAM
from .layer_cam import LayerCAM
from .occlusion import Occlusion
from .registry import KINDS, METHODS, Method
from .saliency import Saliency
from .score_cam import ScoreCAM
from .xgrad_cam import XGradCAM

__all__ = [
    "CAM",
    "KINDS",
    "METHODS",
    "AblationCAM",
    "Deconvnet",
    "EigenCAM",
    "Explainer",
    "FeatureMaps",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputExplainer",
    "LayerCAM",
    "LayerExplainer",
    "Method",
    "Needs",
    "Occlusion",
    "Pass",
    "Result",
    "Saliency",
    "ScoreCAM",
    "Target",
    "XGradCAM",
    "explain",
    "run",
]

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
from .eigen_grad_cam import EigenGradCAM
from .explain import explain
from .fem import FEM
from .full_grad import FullGrad
from .grad_cam import GradCAM
from .grad_cam_element_wise import GradCAMElementWise
from .grad_cam_plus_plus import GradCAMPlusPlus
from .gradient_shap import GradientShap
from .guided import GuidedBackprop, GuidedGradCAM
from .hires_cam import HiResCAM
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .is_cam import ISCAM
from .kpca_cam import KPCACAM
from .layer_cam import LayerCAM
from .occlusion import Occlusion
from .random_cam import RandomCAM
from .registry import KINDS, METHODS, Method
from .saliency import Saliency
from .score_cam import ScoreCAM
from .shapley_cam import ShapleyCAM
from .smooth_grad import SmoothGrad
from .ss_cam import SSCAM
from .xgrad_cam import XGradCAM

__all__ = [
    "CAM",
    "FEM",
    "ISCAM",
    "KINDS",
    "KPCACAM",
    "METHODS",
    "SSCAM",
    "AblationCAM",
    "Deconvnet",
    "EigenCAM",
    "EigenGradCAM",
    "Explainer",
    "FeatureMaps",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GradientShap",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputExplainer",
    "InputXGradient",
    "IntegratedGradients",
    "LayerCAM",
    "LayerExplainer",
    "Method",
    "Needs",
    "Occlusion",
    "Pass",
    "RandomCAM",
    "Result",
    "Saliency",
    "ScoreCAM",
    "ShapleyCAM",
    "SmoothGrad",
    "Target",
    "XGradCAM",
    "explain",
    "run",
]

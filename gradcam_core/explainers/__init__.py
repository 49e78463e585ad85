"""One file a method; each adds to the base classes only how it weighs activations and gradients."""

from .ablation_cam import AblationCAM
from .activations import FeatureMaps
from .attention_rollout import AttentionRollout
from .base import (
    FAMILIES,
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
from .contrastive_grad_cam import ContrastiveGradCAM
from .deconvnet import Deconvnet
from .deep_feature_factorization import Concepts, deep_feature_factorization
from .deep_lift import DeepLift
from .eigen_cam import EigenCAM
from .eigen_grad_cam import EigenGradCAM
from .explain import explain
from .extremal_perturbation import ExtremalPerturbation
from .fem import FEM
from .finer_cam import FinerCAM
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
from .kernel_shap import KernelSHAP
from .kpca_cam import KPCACAM
from .layer_cam import LayerCAM
from .legrad import LeGrad
from .lime import LIME
from .lrp import LRP
from .occlusion import Occlusion
from .random_cam import RandomCAM
from .registry import KINDS, METHODS, Method, methods_for
from .rise import RISE
from .saliency import Saliency
from .score_cam import ScoreCAM
from .shapley_cam import ShapleyCAM
from .smooth_grad import SmoothGrad
from .smooth_grad_cam_pp import SmoothGradCAMPlusPlus
from .ss_cam import SSCAM
from .superpixels import superpixels
from .transformer_attribution import TransformerAttribution
from .xgrad_cam import XGradCAM

__all__ = [
    "CAM",
    "FAMILIES",
    "FEM",
    "ISCAM",
    "KINDS",
    "KPCACAM",
    "LIME",
    "LRP",
    "METHODS",
    "RISE",
    "SSCAM",
    "AblationCAM",
    "AttentionRollout",
    "Concepts",
    "ContrastiveGradCAM",
    "Deconvnet",
    "DeepLift",
    "EigenCAM",
    "EigenGradCAM",
    "Explainer",
    "ExtremalPerturbation",
    "FeatureMaps",
    "FinerCAM",
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
    "KernelSHAP",
    "LayerCAM",
    "LayerExplainer",
    "LeGrad",
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
    "SmoothGradCAMPlusPlus",
    "Target",
    "TransformerAttribution",
    "XGradCAM",
    "deep_feature_factorization",
    "explain",
    "methods_for",
    "run",
    "superpixels",
]

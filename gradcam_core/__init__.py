"""gradcam_core: where a CNN looks when it decides.

Every classic explainer of CNN classifiers on one engine (CAM, Grad-CAM and its variants, the
perturbation methods, the pixel-space gradients) on PyTorch models, through hooks that live for
one call and leave the model exactly as it was. ``METHODS`` lists them; ``explain`` runs several
from one forward and one backward pass.

Example:
    >>> import gradcam_core as gc
    >>> clf = gc.load_model("efficientnet_lite0")
    >>> x = clf.preprocess("assets/images/cat_dog.png")
    >>> r = gc.GradCAM(clf.module, layers=clf.stages)(x, target=243)     # 243: 'bull mastiff'
    >>> picture = gc.overlay(np.asarray(gc.load_image("assets/images/cat_dog.png")), r.maps["layer4"][0])
    >>> results = gc.explain(clf.module, x, target=243, layers=clf.stages, methods=["grad_cam", "layer_cam"])
"""

from . import attacks, evaluation, metrics, sanity, synthesis
from .explainers import (
    CAM,
    FEM,
    ISCAM,
    KINDS,
    KPCACAM,
    LIME,
    LRP,
    METHODS,
    RISE,
    SSCAM,
    AblationCAM,
    Concepts,
    ContrastiveGradCAM,
    Deconvnet,
    DeepLift,
    EigenCAM,
    EigenGradCAM,
    ExtremalPerturbation,
    FeatureMaps,
    FinerCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    GradientShap,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    InputXGradient,
    IntegratedGradients,
    KernelSHAP,
    LayerCAM,
    Method,
    Occlusion,
    RandomCAM,
    Result,
    Saliency,
    ScoreCAM,
    ShapleyCAM,
    SmoothGrad,
    SmoothGradCAMPlusPlus,
    XGradCAM,
    deep_feature_factorization,
    explain,
    superpixels,
)
from .hooks import model_lock
from .images import load_image
from .maps import normalize, overlay, to_image, upsample
from .models import (
    MODELS,
    Classifier,
    WeightsUnavailableError,
    download_weights,
    load_model,
)
from .receptive import ReceptiveField, effective_receptive_field, receptive_field

__all__ = [
    "CAM",
    "FEM",
    "ISCAM",
    "KINDS",
    "KPCACAM",
    "LIME",
    "LRP",
    "METHODS",
    "MODELS",
    "RISE",
    "SSCAM",
    "AblationCAM",
    "Classifier",
    "Concepts",
    "ContrastiveGradCAM",
    "Deconvnet",
    "DeepLift",
    "EigenCAM",
    "EigenGradCAM",
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
    "InputXGradient",
    "IntegratedGradients",
    "KernelSHAP",
    "LayerCAM",
    "Method",
    "Occlusion",
    "RandomCAM",
    "ReceptiveField",
    "Result",
    "Saliency",
    "ScoreCAM",
    "ShapleyCAM",
    "SmoothGrad",
    "SmoothGradCAMPlusPlus",
    "WeightsUnavailableError",
    "XGradCAM",
    "attacks",
    "deep_feature_factorization",
    "download_weights",
    "effective_receptive_field",
    "evaluation",
    "explain",
    "load_image",
    "load_model",
    "metrics",
    "model_lock",
    "normalize",
    "overlay",
    "receptive_field",
    "sanity",
    "superpixels",
    "synthesis",
    "to_image",
    "upsample",
]

"""gradcam_core: where a CNN looks when it decides.

Activation maps, CAM, Grad-CAM, Guided Backpropagation and Guided Grad-CAM on PyTorch models,
through hooks that live for one call and leave the model exactly as it was.

Example:
    >>> import gradcam_core as gc
    >>> clf = gc.load_model("efficientnet_lite0")
    >>> x = clf.preprocess("assets/images/cat_dog.png")
    >>> r = gc.GradCAM(clf.module, layers=clf.stages)(x, target=243)     # 243: 'bull mastiff'
    >>> picture = gc.overlay(np.asarray(gc.load_image("assets/images/cat_dog.png")), r.maps["layer4"][0])
"""

from .explainers import CAM, FeatureMaps, GradCAM, GuidedBackprop, GuidedGradCAM, Result
from .hooks import model_lock
from .images import load_image
from .maps import normalize, overlay, to_image, upsample
from .models import MODELS, Classifier, WeightsUnavailableError, download_weights, load_model

__all__ = [
    "CAM",
    "MODELS",
    "Classifier",
    "FeatureMaps",
    "GradCAM",
    "GuidedBackprop",
    "GuidedGradCAM",
    "Result",
    "WeightsUnavailableError",
    "download_weights",
    "load_image",
    "load_model",
    "model_lock",
    "normalize",
    "overlay",
    "to_image",
    "upsample",
]

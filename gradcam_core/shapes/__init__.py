"""The shapes lab: a synthetic data set whose objects' masks and boxes are known, small CNNs
trained on its labels alone, and the measure of how well their CAM and Grad-CAM find the objects.

CAM's claim (Zhou et al. 2016) is that a network trained only on image labels learns *where* the
objects are. Here that is checked on a laptop CPU, against ground truth. The biased variant
(:func:`render_biased`, a tag that gives the class away) and the networks trained on it
(``shapes_biased``, ``shapes_debiased``) let the Grad-CAM paper's bias lesson be checked the same way.

Example:
    >>> import gradcam_core as gc
    >>> from gradcam_core import shapes, metrics
    >>> batch = shapes.render(1, seed=7)       # pictures (uint8 RGB), images, labels, masks, boxes
    >>> clf = gc.load_model("shapes_gap")
    >>> cam = gc.CAM(clf.module, layer=clf.cam_layer, fc=clf.fc)(batch.images, target=batch.labels)
    >>> m = cam.maps["layer4"][0]
    >>> box = metrics.box_from_map(m, (64, 64), threshold=0.5)
    >>> box, batch.boxes[0].tolist()
    ((20, 0, 48, 31), [18, 5, 50, 36])
    >>> round(metrics.box_iou(box, batch.boxes[0]), 2), metrics.pointing_game(m, batch.masks[0])
    (0.64, True)
    >>> picture = gc.overlay(batch.pictures[0], m)       # (64, 64, 3) uint8, the map over the picture

Command line: ``python -m gradcam_core.shapes train`` and ``python -m gradcam_core.shapes evaluate``.
"""

from .data import (
    CHANCE_BIAS,
    CLASSES,
    CUE_PATTERNS,
    CUE_SIZE,
    IMAGE_SIZE,
    MEAN,
    STD,
    BiasedBatch,
    ShapesBatch,
    generate,
    generate_biased,
    generate_with_boxes,
    render,
    render_backgrounds,
    render_biased,
    render_pairs,
    to_rgb,
    to_tensor,
)
from .evaluation import (
    EVALUATION_SEED,
    TIGHT_THRESHOLD,
    BiasEvaluation,
    Localization,
    NetworkEvaluation,
    bias_table,
    centre_baseline,
    evaluate_bias,
    evaluate_network,
    markdown_table,
)
from .networks import (
    NETWORKS,
    STAGES,
    TRANSFORMERS,
    VIT_STAGES,
    ShapesBody,
    ShapesFC,
    ShapesGAP,
    ShapesGMP,
    build_network,
    build_vit,
    load_shapes_model,
    shapes_classifier,
    weights_file,
)
from .training import (
    BIASES,
    DEFAULT_EPOCHS,
    DEFAULT_TRAIN_SIZE,
    EARLY_EPOCH,
    VALIDATION_SEED,
    VIT_EPOCHS,
    EpochCallback,
    held_out_metrics,
    train,
)

__all__ = [
    "BIASES",
    "CHANCE_BIAS",
    "CLASSES",
    "CUE_PATTERNS",
    "CUE_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_TRAIN_SIZE",
    "EARLY_EPOCH",
    "EVALUATION_SEED",
    "IMAGE_SIZE",
    "MEAN",
    "NETWORKS",
    "STAGES",
    "STD",
    "TIGHT_THRESHOLD",
    "TRANSFORMERS",
    "VALIDATION_SEED",
    "VIT_EPOCHS",
    "VIT_STAGES",
    "BiasEvaluation",
    "BiasedBatch",
    "EpochCallback",
    "Localization",
    "NetworkEvaluation",
    "ShapesBatch",
    "ShapesBody",
    "ShapesFC",
    "ShapesGAP",
    "ShapesGMP",
    "bias_table",
    "build_network",
    "build_vit",
    "centre_baseline",
    "evaluate_bias",
    "evaluate_network",
    "generate",
    "generate_biased",
    "generate_with_boxes",
    "held_out_metrics",
    "load_shapes_model",
    "markdown_table",
    "render",
    "render_backgrounds",
    "render_biased",
    "render_pairs",
    "shapes_classifier",
    "to_rgb",
    "to_tensor",
    "train",
    "weights_file",
]

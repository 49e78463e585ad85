"""How good is a map? Localization against known objects, and faithfulness to the model.

Example:
    >>> from gradcam_core import metrics
    >>> metrics.pointing_game(result.maps["layer4"][0], mask)
    >>> metrics.deletion(clf.module, x, result.maps["layer4"], target=243).auc
"""

from .faithfulness import (
    BLUR_KERNEL,
    BLUR_SIGMA,
    Curve,
    average_drop,
    blur,
    deletion,
    deletion_steps,
    insertion,
    occlusion_correlation,
    rank_correlation,
    salience_order,
)
from .localization import (
    BOX_THRESHOLD,
    Box,
    box_from_map,
    box_from_mask,
    box_iou,
    box_ious,
    boxes_from_maps,
    boxes_from_masks,
    mask_coverages,
    mask_ious,
    mass_in_masks,
    pointing_game,
    pointing_game_hits,
)

__all__ = [
    "BLUR_KERNEL",
    "BLUR_SIGMA",
    "BOX_THRESHOLD",
    "Box",
    "Curve",
    "average_drop",
    "blur",
    "box_from_map",
    "box_from_mask",
    "box_iou",
    "box_ious",
    "boxes_from_maps",
    "boxes_from_masks",
    "deletion",
    "deletion_steps",
    "insertion",
    "mask_coverages",
    "mask_ious",
    "mass_in_masks",
    "occlusion_correlation",
    "pointing_game",
    "pointing_game_hits",
    "rank_correlation",
    "salience_order",
]

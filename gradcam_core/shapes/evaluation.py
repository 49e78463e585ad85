"""Scoring the shapes networks: accuracy, and how well their maps find the object.

Each map explains the picture's true class and is scored by the protocols of
:mod:`gradcam_core.metrics`: the pointing game; the Grad-CAM paper's box IoU > 0.5 with its
threshold of 15% of the map's maximum; the mask IoU of the region above half the maximum, and
the share of the object in that region; and the share of the map's mass on the object
(Score-CAM's energy-based pointing game). The 15% threshold was chosen for ImageNet, whose
objects often fill the picture; here an 8x8 map upsampled 8 times spreads past the object, and
15% gives boxes about half again too wide, so the rate at a 50% threshold is reported beside it.
Beside them, baselines that never look at the picture: the centre point, and a centred box of the
ground-truth boxes' mean size.

:func:`evaluate_bias` scores the biased-data networks on :func:`~gradcam_core.shapes.render_biased`
pictures: accuracy, how often a tag that disagrees with the class wins, and where Grad-CAM for
the predicted class puts its mass: on the tag or on the object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..classifier import Classifier
from ..explainers import CAM, GradCAM, explain, methods_for
from ..metrics import (
    BOX_THRESHOLD,
    box_ious,
    boxes_from_maps,
    mask_coverages,
    mask_ious,
    mass_in_masks,
    pointing_game_hits,
)
from .data import BiasedBatch, ShapesBatch

__all__ = [
    "EVALUATION_SEED",
    "TIGHT_THRESHOLD",
    "BiasEvaluation",
    "Localization",
    "NetworkEvaluation",
    "bias_table",
    "centre_baseline",
    "evaluate_bias",
    "evaluate_network",
    "markdown_table",
]

#: The seed of the evaluation pictures, apart from training (below 10**6) and validation.
EVALUATION_SEED = 2_000_002

#: The second box threshold, a fraction of the map's maximum, suited to these maps.
TIGHT_THRESHOLD = 0.5

# Pictures explained at once: bounds the memory the hooked activations take.
_CHUNK = 250


@dataclass(frozen=True)
class Localization:
    """How one method at one layer localizes, as rates in [0, 1].

    ``box_iou`` is the share of boxes with IoU > 0.5 at the paper's threshold (15% of the
    maximum), ``box_iou_tight`` at :data:`TIGHT_THRESHOLD`; ``mask_iou`` the mean IoU of the
    region at or above :data:`TIGHT_THRESHOLD` with the object's mask, ``coverage`` the mean share
    of the object inside that region; ``mass_on_object`` the mean share of the map's mass on the
    object. The scores are ``None`` when the method refuses
    the network, and ``refusal`` then holds its message.
    """

    method: str
    layer: str
    pointing_game: float | None
    box_iou: float | None
    box_iou_tight: float | None
    mask_iou: float | None = None
    coverage: float | None = None
    mass_on_object: float | None = None
    refusal: str = ""


@dataclass(frozen=True)
class NetworkEvaluation:
    """A network's accuracy and the localization of CAM (at its last stage), Grad-CAM (at each), and for a
    transformer each attention method (over all its blocks)."""

    name: str
    accuracy: float
    localizations: list[Localization]


def evaluate_network(
    classifier: Classifier, batch: ShapesBatch, grad_cam_layers: Sequence[str] | None = None
) -> NetworkEvaluation:
    """Accuracy, then CAM at ``cam_layer``, Grad-CAM at every stage and, for a Vision Transformer,
    each attention method (layer ``"all blocks"``), on ``batch``'s true classes.

    ``grad_cam_layers`` limits Grad-CAM to those layers (``()``: CAM alone); by default every stage.

    Example:
        >>> evaluation = evaluate_network(load_model("shapes_gap"), render(1000, EVALUATION_SEED))
        >>> cam = evaluation.localizations[0]
        >>> cam.method, cam.layer, cam.pointing_game > 0.9
        ('CAM', 'layer4', True)
    """
    images, size = batch.images, tuple(batch.masks.shape[-2:])
    module = classifier.module
    predictions = _predictions(classifier, images)
    accuracy = (predictions == batch.labels).float().mean().item()

    localizations = []
    try:
        cam = CAM(module, layer=classifier.cam_layer, fc=classifier.fc)
        cam_maps = _explain(cam, images, batch.labels)[classifier.cam_layer]
        localizations.append(_score("CAM", classifier.cam_layer, cam_maps, batch, size))
    except ValueError as refusal:
        localizations.append(Localization("CAM", classifier.cam_layer, None, None, None, refusal=str(refusal)))
    layers = classifier.stages if grad_cam_layers is None else list(grad_cam_layers)
    if layers:
        grad_cam_maps = _explain(GradCAM(module, layers=layers), images, batch.labels)
        for layer in layers:
            localizations.append(_score("Grad-CAM", layer, grad_cam_maps[layer], batch, size))
    for name, method in methods_for(module).items():
        if method.kind == "attention":
            maps = torch.cat([
                explain(module, chunk, chunk_labels, methods=[name])[name].maps["input"]
                for chunk, chunk_labels in zip(images.split(_CHUNK), batch.labels.split(_CHUNK))
            ])
            localizations.append(_score(method.label, "all blocks", maps, batch, size))
    return NetworkEvaluation(classifier.name, accuracy, localizations)


def centre_baseline(batch: ShapesBatch) -> Localization:
    """Pointing at the picture's centre pixel, and a centred box of the mean ground-truth size."""
    height, width = batch.masks.shape[-2:]
    hits = batch.masks[:, height // 2, width // 2]
    mean_size = (batch.boxes[:, 2:] - batch.boxes[:, :2]).float().mean(dim=0)
    centre = torch.tensor([width / 2, height / 2])
    box = torch.cat([centre - mean_size / 2, centre + mean_size / 2]).round()
    box_rate = _rate(box_ious(box.expand(len(batch.boxes), 4), batch.boxes) > 0.5)
    x0, y0, x1, y1 = (int(v) for v in box.tolist())
    centred = torch.zeros(len(batch.masks), height, width)
    centred[:, y0:y1, x0:x1] = 1.0
    uniform = torch.ones(len(batch.masks), height, width)
    return Localization(
        "centre point / centre box", "-", _rate(hits), box_rate, box_rate,
        mask_iou=mask_ious(centred, batch.masks).mean().item(),
        coverage=mask_coverages(centred, batch.masks).mean().item(),
        mass_on_object=mass_in_masks(uniform, batch.masks).mean().item(),
    )


def markdown_table(evaluations: Sequence[NetworkEvaluation], baseline: Localization, n: int) -> str:
    """The evaluations and the baseline as a Markdown table, refusals explained below it."""
    lines = [
        "| network | accuracy | map | layer | pointing game "
        f"| box IoU > 0.5 ({100 * BOX_THRESHOLD:.0f}% threshold) "
        f"| box IoU > 0.5 ({100 * TIGHT_THRESHOLD:.0f}% threshold) "
        f"| mask IoU ({100 * TIGHT_THRESHOLD:.0f}% threshold) | object covered (same region) | mass on the object |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    refusals = []
    for evaluation in evaluations:
        for row, localization in enumerate(evaluation.localizations):
            name, accuracy = (evaluation.name, _percent(evaluation.accuracy)) if row == 0 else ("", "")
            if localization.refusal:
                refusals.append(f"{evaluation.name}: {localization.refusal}")
                scores = [f"refuses ({len(refusals)})"] * 6
            else:
                scores = [_percent(rate) for rate in _rates(localization)]
            lines.append(
                f"| {name} | {accuracy} | {localization.method} | {localization.layer} "
                f"| {' | '.join(scores)} |"
            )
    scores = [_percent(rate) for rate in _rates(baseline)]
    lines.append(f"| baseline | - | {baseline.method} | - | {' | '.join(scores)} |")
    notes = [f"({number}) {text}" for number, text in enumerate(refusals, start=1)]
    return "\n".join(
        lines + ([""] + notes if notes else []) + ["", f"{n} held-out pictures; maps explain the true class."]
    )


@dataclass(frozen=True)
class BiasEvaluation:
    """A network on one set of tagged pictures: what it decides, and where its Grad-CAM looks.

    All scores are rates or means in [0, 1]. ``follows_cue`` is the share, among the pictures
    whose tag shows another class, predicted as the tag's class (``None`` if the tag always
    agrees). The maps are Grad-CAM at ``cam_layer`` for the *predicted* class (what made the
    decision); ``mass_on_cue`` and ``mass_on_object`` are their mean shares of mass on the tag and
    on the object, ``pointing_cue`` and ``pointing_object`` where their maxima fall.
    """

    network: str
    test_set: str
    accuracy: float
    follows_cue: float | None
    mass_on_cue: float
    mass_on_object: float
    pointing_cue: float
    pointing_object: float


def evaluate_bias(classifier: Classifier, batch: BiasedBatch, test_set: str) -> BiasEvaluation:
    """Score ``classifier`` on tagged pictures; ``test_set`` names them in the table.

    Example:
        >>> fair = render_biased(1000, EVALUATION_SEED, bias=CHANCE_BIAS)
        >>> evaluate_bias(load_model("shapes_biased"), fair, "fair").follows_cue > 0.5
        True
    """
    module = classifier.module
    predictions = _predictions(classifier, batch.images)
    disagree = batch.cues != batch.labels
    maps = _explain(GradCAM(module, layers=[classifier.cam_layer]), batch.images, predictions)[classifier.cam_layer]
    return BiasEvaluation(
        classifier.name,
        test_set,
        accuracy=_rate(predictions == batch.labels),
        follows_cue=_rate(predictions[disagree] == batch.cues[disagree]) if disagree.any() else None,
        mass_on_cue=mass_in_masks(maps, batch.cue_masks).mean().item(),
        mass_on_object=mass_in_masks(maps, batch.masks).mean().item(),
        pointing_cue=_rate(pointing_game_hits(maps, batch.cue_masks)),
        pointing_object=_rate(pointing_game_hits(maps, batch.masks)),
    )


def bias_table(evaluations: Sequence[BiasEvaluation], batch: BiasedBatch) -> str:
    """The bias evaluations as a Markdown table, with the areas a uniform map would put on each region."""
    lines = [
        "| network | test set | accuracy | follows a disagreeing tag | Grad-CAM mass on the tag "
        "| mass on the object | pointing game: tag | pointing game: object |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in evaluations:
        follows = "-" if e.follows_cue is None else _percent(e.follows_cue)
        lines.append(
            f"| {e.network} | {e.test_set} | {_percent(e.accuracy)} | {follows} | {_percent(e.mass_on_cue)} "
            f"| {_percent(e.mass_on_object)} | {_percent(e.pointing_cue)} | {_percent(e.pointing_object)} |"
        )
    cue_area = batch.cue_masks.float().mean().item()
    object_area = batch.masks.float().mean().item()
    return "\n".join(
        lines
        + [
            "",
            f"{len(batch.labels)} held-out pictures per test set; Grad-CAM at the last stage explains the "
            f"predicted class. A uniform map would put {_percent(cue_area)} of its mass on the tag and "
            f"{_percent(object_area)} on the object.",
        ]
    )


def _predictions(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    """Top-1 classes, a chunk at a time, each under the model's lock (a shared model's hooks never see them)."""
    return torch.cat([classifier.predict(chunk).argmax(dim=1) for chunk in images.split(_CHUNK)])


def _explain(explainer, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Layer -> ``(N, h, w)`` maps of the true classes, explained a chunk at a time."""
    results = [
        explainer(chunk, target=chunk_labels)
        for chunk, chunk_labels in zip(images.split(_CHUNK), labels.split(_CHUNK))
    ]
    return {layer: torch.cat([result.maps[layer] for result in results]) for layer in explainer.layers}


def _score(
    method: str, layer: str, maps: torch.Tensor, batch: ShapesBatch, size: tuple[int, int]
) -> Localization:
    hits = pointing_game_hits(maps, batch.masks)
    box_rates = [
        _rate(box_ious(boxes_from_maps(maps, size, threshold), batch.boxes) > 0.5)
        for threshold in (BOX_THRESHOLD, TIGHT_THRESHOLD)
    ]
    return Localization(
        method, layer, _rate(hits), *box_rates,
        mask_iou=mask_ious(maps, batch.masks, TIGHT_THRESHOLD).mean().item(),
        coverage=mask_coverages(maps, batch.masks, TIGHT_THRESHOLD).mean().item(),
        mass_on_object=mass_in_masks(maps, batch.masks).mean().item(),
    )


def _rates(localization: Localization) -> tuple[float, ...]:
    return (
        localization.pointing_game,
        localization.box_iou,
        localization.box_iou_tight,
        localization.mask_iou,
        localization.coverage,
        localization.mass_on_object,
    )


def _rate(flags: torch.Tensor) -> float:
    return flags.float().mean().item()


def _percent(rate: float) -> str:
    return f"{100 * rate:.1f}%"

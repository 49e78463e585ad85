"""Every method measured: localization where the truth is known, faithfulness everywhere.

``python -m gradcam_core evaluate --model shapes_gap --methods all --n 500`` prints one Markdown
table, a row per method of :data:`~gradcam_core.METHODS`: the pointing game, the box IoU > 0.5 rate
and the mask IoU (ground truth: the shapes networks only), the deletion and insertion AUCs, Average
Drop and Increase in Confidence, the rank correlation with occlusion, and the milliseconds per
image. On the shapes networks the pictures are held-out shapes and each map explains the true
class; on the ImageNet models they are the shipped sample photos, explained for the top-1 class.

Layer methods explain the classifier's ``cam_layer``; pixel-space pictures ``(N, 3, H, W)`` are
reduced to the largest absolute value over colours (as saliency is drawn). Each method runs on
its own, so its time is its own. Occlusion uses the square of :func:`occlusion_window`, the one the
rank correlation compares every map with.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .classifier import Classifier
from .explainers import METHODS, Occlusion, explain, methods_for
from .explainers.perturbation import chunks
from .shapes import EVALUATION_SEED, NETWORKS, TIGHT_THRESHOLD, TRANSFORMERS, render

__all__ = [
    "PRECOMPUTED",
    "SAMPLE_IMAGES",
    "EvaluationSet",
    "MethodScores",
    "as_records",
    "evaluate",
    "evaluation_set",
    "load_scores",
    "markdown_table",
    "occlusion_window",
    "one_map",
    "photo_labels",
    "stderr_progress",
]

#: The photos the ImageNet models are evaluated on.
SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "assets" / "images"


def photo_labels(categories: Sequence[str]) -> dict[Path, list[int]]:
    """Each labelled photo under ``assets/images`` -> the classes counted as right for it, as indices
    into ``categories`` (an empty list: no class fits). Read from ``assets/images/labels.json``.

    Example:
        >>> labels = photo_labels(imagenet_categories())
        >>> labels[SAMPLE_IMAGES / "grace_hopper.jpg"]
        [652]
    """
    entries = json.loads((SAMPLE_IMAGES / "labels.json").read_text())
    index = {name: i for i, name in enumerate(categories)}
    unknown = [name for key, names in entries.items() if not key.startswith("_") for name in names if name not in index]
    if unknown:
        raise ValueError(f"labels.json names classes the model does not have: {', '.join(unknown)}.")
    return {SAMPLE_IMAGES / key: [index[name] for name in names] for key, names in entries.items()
            if not key.startswith("_")}


@dataclass(frozen=True)
class EvaluationSet:
    """Inputs, the classes to explain, and the ground truth where there is one."""

    description: str
    images: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None = None
    boxes: torch.Tensor | None = None


@dataclass(frozen=True)
class MethodScores:
    """One method's means over the images; ``None`` where not measured (no ground truth, or a refusal)."""

    method: str
    label: str
    pointing_game: float | None
    box_iou: float | None
    mask_iou: float | None
    mask_iou_tight: float | None
    deletion_auc: float | None
    insertion_auc: float | None
    average_drop: float | None
    increase_in_confidence: float | None
    occlusion_correlation: float | None
    ms_per_image: float | None
    refusal: str = ""


def evaluation_set(classifier: Classifier, n: int = 500, seed: int = EVALUATION_SEED) -> EvaluationSet:
    """Held-out shapes (``n`` of them) for a shapes network (its ViT too); the sample photos for any other model."""
    if classifier.name in (*NETWORKS, *TRANSFORMERS):
        batch = render(n, seed)
        return EvaluationSet(f"{n} held-out shapes pictures (seed {seed}), true class", batch.images, batch.labels,
                             batch.masks, batch.boxes)
    files = sorted(p for p in SAMPLE_IMAGES.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    images = torch.cat([classifier.preprocess(path) for path in files])
    targets = classifier.predict(images).argmax(dim=1)
    return EvaluationSet(f"the {len(files)} sample photos in assets/images, top-1 class", images, targets)


def evaluate(classifier: Classifier, data: EvaluationSet, methods: Sequence[str] | None = None,
             batch_size: int = 64, steps: int = 100,
             progress: Callable[[str, int, int], None] | None = None) -> list[MethodScores]:
    """Score each method on ``data`` (by default every one that explains the classifier's network,
    :func:`~gradcam_core.methods_for`); ``progress(method, done, total)`` after each chunk of images.

    Example:
        >>> clf = load_model("shapes_gap")
        >>> rows = evaluate(clf, evaluation_set(clf, n=50), ["grad_cam", "layer_cam"])
        >>> rows[0].pointing_game, rows[0].deletion_auc
    """
    methods = list(methods_for(classifier.module)) if methods is None else methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    model, n = classifier.module, len(data.images)
    window = occlusion_window(data.images)
    occlusion = torch.cat([
        Occlusion(model, **window, batch_size=batch_size)(data.images[c.start:c.stop], data.targets[c.start:c.stop])
        for c in chunks(n, batch_size)
    ])
    rows = []
    for method in methods:
        options = {"cam": {"fc": classifier.fc}, "occlusion": window}.get(method, {})
        try:
            maps, seconds = _maps(classifier, data, method, options, batch_size, progress)
        except ValueError as refusal:
            rows.append(MethodScores(method, METHODS[method].label, *([None] * 10), refusal=str(refusal)))
            continue
        rows.append(_scores(classifier, data, method, maps, seconds, occlusion, batch_size, steps))
    return rows


def one_map(m: torch.Tensor) -> torch.Tensor:
    """A method's ``(N, h, w)`` map; a pixel-space picture ``(N, 3, H, W)`` as its max |value| over colours."""
    return m.abs().amax(dim=1) if m.dim() == 4 else m


def occlusion_window(images: torch.Tensor) -> dict[str, int]:
    """The occlusion square for pictures of this size: a seventh of the side, moved by half of it.

    The reference of the rank correlation, and the Occlusion row itself (whose correlation is then
    1 by construction).
    """
    window = max(2, round(min(images.shape[-2:]) / 7))
    return {"window": window, "stride": max(1, window // 2)}


def _maps(classifier, data, method, options, batch_size, progress) -> tuple[torch.Tensor, float]:
    """Every image's ``(h, w)`` map for its class, and the seconds they took."""
    parts, seconds, n = [], 0.0, len(data.images)
    for chunk in chunks(n, batch_size):
        start = time.perf_counter()
        result = explain(classifier.module, data.images[chunk.start:chunk.stop], data.targets[chunk.start:chunk.stop],
                         [classifier.cam_layer], [method], {method: options})[method]
        seconds += time.perf_counter() - start
        parts.append(one_map(next(iter(result.maps.values()))))
        if progress is not None:
            progress(METHODS[method].label, chunk.stop, n)
    return torch.cat(parts), seconds


def _scores(classifier, data, method, maps, seconds, occlusion, batch_size, steps) -> MethodScores:
    model, x, targets = classifier.module, data.images, data.targets
    located = data.masks is not None
    drop, increase = metrics.average_drop(model, x, maps, targets)
    correlations = metrics.occlusion_correlation(model, x, maps, targets, occlusion=occlusion)
    return MethodScores(
        method=method,
        label=METHODS[method].label,
        pointing_game=_mean(metrics.pointing_game_hits(maps, data.masks)) if located else None,
        box_iou=_mean(metrics.box_ious(metrics.boxes_from_maps(maps, tuple(data.masks.shape[-2:])), data.boxes) > 0.5)
        if located else None,
        mask_iou=_mean(metrics.mask_ious(maps, data.masks)) if located else None,
        mask_iou_tight=_mean(metrics.mask_ious(maps, data.masks, TIGHT_THRESHOLD)) if located else None,
        deletion_auc=_mean(metrics.deletion(model, x, maps, targets, steps=steps, batch_size=batch_size).auc),
        insertion_auc=_mean(metrics.insertion(model, x, maps, targets, steps=steps, batch_size=batch_size).auc),
        average_drop=drop,
        increase_in_confidence=increase,
        occlusion_correlation=float(np.nanmean(correlations)) if not np.isnan(correlations).all() else None,
        ms_per_image=1000 * seconds / len(x),
    )


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean())


def markdown_table(rows: Sequence[MethodScores], located: bool) -> str:
    """The scores as a Markdown table; the ground-truth columns only when ``located``."""
    head = ["method"]
    if located:
        head += ["pointing game", "box IoU > 0.5", "mask IoU (15% / 50%)"]
    head += ["deletion AUC (lower is better)", "insertion AUC (higher)", "Average Drop % (lower)",
             "Increase in Confidence % (higher)", "rank corr. with occlusion", "ms / image"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    refusals = []
    for row in rows:
        if row.refusal:
            refusals.append(f"{row.label}: {row.refusal}")
            lines.append(f"| {row.label} |" + " refuses |" * (len(head) - 1))
            continue
        cells = [row.label]
        if located:
            cells += [_percent(row.pointing_game), _percent(row.box_iou),
                      f"{row.mask_iou:.2f} / {row.mask_iou_tight:.2f}"]
        cells += [f"{row.deletion_auc:.3f}", f"{row.insertion_auc:.3f}", f"{row.average_drop:.1f}",
                  f"{row.increase_in_confidence:.1f}",
                  "n/a" if row.occlusion_correlation is None else f"{row.occlusion_correlation:.2f}",
                  f"{row.ms_per_image:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ([""] + refusals if refusals else []))


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def as_records(rows: Sequence[MethodScores]) -> list[dict]:
    """The rows as plain dictionaries (for a JSON file the dashboard reads)."""
    return [asdict(row) for row in rows]


#: Where the dashboard finds the tables ``evaluate --json`` wrote, one file a model.
PRECOMPUTED = Path(__file__).resolve().parents[1] / "assets" / "precomputed"


def load_scores(model: str, directory: Path = PRECOMPUTED) -> tuple[dict, list[MethodScores]] | None:
    """The shipped table of ``model`` (what the file says besides the rows, and the rows), or ``None``.

    A file that cannot be read or parsed counts as missing: the page then offers a live run.
    """
    path = directory / f"evaluation_{model}.json"
    try:
        record = json.loads(path.read_text())
        rows = [MethodScores(**row) for row in record.pop("rows")]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return record, rows


def stderr_progress(label: str, done: int, total: int) -> None:
    """A one-line progress bar on standard error."""
    width = 30
    filled = width * done // max(total, 1)
    print(f"\r{label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="" if done < total else "\n",
          file=sys.stderr, flush=True)

"""Training the shapes networks from scratch, deterministically, in about a minute on a laptop CPU.

The loss is one logistic loss per class (``binary_cross_entropy_with_logits`` on one-hot targets),
and a sixth of the training pictures are clutter alone, negatives for every class. Why not the
usual softmax cross-entropy: softmax is unchanged when the same number is added to every logit, so
a network may score a class by evidence *against* the others found anywhere in the picture (a
"triangle" becomes "nothing round, nothing crossed"), and its CAM then lights up the background.
With a logistic loss per class and object-free negatives, each class needs evidence *for* itself,
and in these pictures that evidence is only on the object: the map CAM draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..classifier import Classifier
from ..explainers import CAM, GradCAM
from ..metrics import pointing_game_hits
from .data import (
    CHANCE_BIAS,
    CLASSES,
    render,
    render_backgrounds,
    render_biased,
    to_tensor,
)
from .networks import (
    NETWORKS,
    TRANSFORMERS,
    ShapesGAP,
    ShapesGMP,
    build_network,
    shapes_classifier,
)

__all__ = [
    "BIASES",
    "DEFAULT_EPOCHS",
    "DEFAULT_TRAIN_SIZE",
    "EARLY_EPOCH",
    "VALIDATION_SEED",
    "VIT_EPOCHS",
    "EpochCallback",
    "held_out_metrics",
    "train",
    "warmup_cosine",
]

#: The held-out pictures scored after each epoch; training seeds below a million never meet them.
VALIDATION_SEED = 1_000_001
#: About 45 seconds on two CPU cores, pictures included: 91-98% held-out accuracy and a CAM that
#: points into the object about as often, depending on the seed.
DEFAULT_EPOCHS = 8
DEFAULT_TRAIN_SIZE = 4000

#: The share of training pictures whose cue tag shows their class, for the networks trained on
#: :func:`~gradcam_core.shapes.render_biased` pictures: the biased set, and the fix (chance).
BIASES = {"shapes_biased": 0.95, "shapes_debiased": CHANCE_BIAS}
#: The command line's epochs for ``shapes_vit``, which sees new pictures every epoch: about nine
#: minutes on two CPU cores, for the shipped weights.
VIT_EPOCHS = 40
#: ``shapes_gap_early`` is ``shapes_gap``'s training run after this epoch (of the command line's 12):
#: about 80% accurate where the finished network is 99%.
EARLY_EPOCH = 4

#: ``on_epoch(epoch, classifier, metrics)``, called after each epoch (``epoch`` counts from 1).
EpochCallback = Callable[[int, Classifier, dict[str, float]], None]

# Pictures of clutter alone, as a share of the pictures with an object.
_BACKGROUND_SHARE = 0.2
_BATCH_SIZE = 32
_LEARNING_RATE = 5e-3
# The ViT's. A transformer has no convolution's prior that neighbours matter: it learns it from
# many pictures, so it sees new ones every epoch (epoch e's from seed + _EPOCH_SEEDS * (e - 1))
# where the CNNs see the same ones again.
_VIT_LEARNING_RATE = 1e-3
_EPOCH_SEEDS = 1000
# The learning rate rises over this share of the steps, from this fraction of its peak.
_WARMUP = 0.2
_WARMUP_START = 1 / 25
# Strong (decoupled) weight decay favours evidence spread over the object over one sharp edge
# detector: a few points more in the pointing game, in our trials.
_WEIGHT_DECAY = 0.05


def train(
    name: str = "shapes_gap",
    epochs: int = DEFAULT_EPOCHS,
    n_train: int = DEFAULT_TRAIN_SIZE,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    n_validation: int = 500,
) -> Classifier:
    """Train a fresh shapes network of :data:`~gradcam_core.shapes.NETWORKS` and return it in eval mode.

    ``"shapes_shuffled"`` is the GAP network trained on the same pictures with their labels shuffled
    (a fixed permutation drawn from ``seed``): the data randomization test of Adebayo et al. 2018.
    Whatever it learns, it cannot be where the shape is. ``"shapes_biased"`` and
    ``"shapes_debiased"`` learn from the same pictures with a cue tag (:data:`BIASES`).
    ``"shapes_vit"`` sees new pictures every epoch (epoch ``e``'s from ``seed + 1000 (e - 1)``): a
    transformer learns from many more pictures than a CNN needs.
    ``"shapes_gap_early"`` is not trained on its own: it is ``"shapes_gap"`` after
    :data:`EARLY_EPOCH` epochs, which ``on_epoch`` can save.

    AdamW with a warm-up then cosine learning rate (:func:`warmup_cosine`), batches of 32 drawn
    by a ``torch.Generator`` seeded with ``seed``; the initial weights come from ``seed`` too, and
    the global random state is left as it was. The same arguments on the same machine give the
    same weights. The defaults take about 45 seconds on two CPU cores, pictures included, and give
    a CAM that finds the objects; the command line's longer run (12 epochs of 4000) ships the
    weights.

    Args:
        name: one of :data:`~gradcam_core.shapes.NETWORKS` but ``"shapes_gap_early"``, or
            ``"shapes_vit"``.
        epochs: passes over the training pictures.
        n_train: training pictures with an object, rendered with ``render(n_train, seed)``; a
            further ``n_train / 5`` pictures of clutter alone come from ``render_backgrounds``.
        seed: seeds the pictures, the initial weights and the batch order (below 10**6, so that
            the pictures stay apart from the held-out ones).
        on_epoch: called after each epoch as ``on_epoch(epoch, classifier, metrics)``, the
            classifier in eval mode; ``metrics`` holds ``"loss"`` (mean training loss of the epoch),
            ``"accuracy"`` and ``"pointing_game"`` (on ``n_validation`` held-out pictures, with
            tags by chance for the networks of :data:`BIASES`; CAM at
            ``layer4`` where it applies, Grad-CAM there for shapes_fc) and ``"seconds"`` since the
            start. The classifier keeps training afterwards: ``copy.deepcopy`` it to keep a snapshot.
        on_batch: called after each batch as ``on_batch(batches_done, batches_total)``, for a
            progress bar.
        n_validation: held-out pictures scored after each epoch.

    Example:
        >>> curve = []
        >>> clf = train("shapes_gap", on_epoch=lambda epoch, clf, m: curve.append(m["pointing_game"]))
    """
    if name not in (*NETWORKS, *TRANSFORMERS) or name == "shapes_gap_early":
        trainable = [n for n in (*NETWORKS, *TRANSFORMERS) if n != "shapes_gap_early"]
        raise ValueError(
            f"Cannot train {name!r}; choose one of {', '.join(trainable)} (shapes_gap_early is shapes_gap "
            f"after epoch {EARLY_EPOCH}: save it from on_epoch)."
        )
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_network(name)
    classifier = shapes_classifier(name, module, f"trained from scratch (seed {seed})")

    fresh_pictures = name in TRANSFORMERS
    if fresh_pictures and seed + _EPOCH_SEEDS * (epochs - 1) >= VALIDATION_SEED:
        raise ValueError(f"seed + {_EPOCH_SEEDS} x (epochs - 1) must stay below {VALIDATION_SEED}, the held-out "
                         f"pictures' seed: {name} draws new pictures every epoch.")
    images, targets = _training_set(name, n_train, seed)
    # The networks that learn from tagged pictures are scored on the fair set: tags by chance.
    held_out = None
    if on_epoch:
        held_out = (
            render_biased(n_validation, VALIDATION_SEED, CHANCE_BIAS)
            if name in BIASES
            else render(n_validation, VALIDATION_SEED)
        )
    # Channels-last convolutions run about a quarter faster on CPU; the weights return to the
    # default layout at the end.
    module.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)

    learning_rate = _VIT_LEARNING_RATE if name in TRANSFORMERS else _LEARNING_RATE
    optimizer = torch.optim.AdamW(module.parameters(), lr=learning_rate, weight_decay=_WEIGHT_DECAY)
    batches_per_epoch = -(-len(images) // _BATCH_SIZE)
    total_steps = epochs * batches_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps))
    order = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        if fresh_pictures and epoch > 1:
            images, targets = _training_set(name, n_train, seed + _EPOCH_SEEDS * (epoch - 1))
            images = images.contiguous(memory_format=torch.channels_last)
        module.train()
        total_loss = 0.0
        for batch, indices in enumerate(torch.randperm(len(images), generator=order).split(_BATCH_SIZE)):
            loss = F.binary_cross_entropy_with_logits(module(images[indices]), targets[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(indices)
            if on_batch:
                on_batch((epoch - 1) * batches_per_epoch + batch + 1, total_steps)
        module.eval()
        if on_epoch:
            metrics = held_out_metrics(classifier, held_out.images, held_out.labels, held_out.masks)
            metrics["loss"] = total_loss / len(images)
            metrics["seconds"] = time.perf_counter() - start
            on_epoch(epoch, classifier, metrics)
    module.to(memory_format=torch.contiguous_format).eval()
    return classifier


def warmup_cosine(step: int, total_steps: int) -> float:
    r"""The learning rate's factor at ``step`` (from 0) of ``total_steps``.

    A linear rise from 1/25 to 1 over the first ``w`` = 20% of the steps, which keeps Adam's first
    steps, taken on poorly estimated moments, small; then a half cosine down to 0 at step ``T``:

    .. math::
        f(t) = \tfrac{1}{2}\big(1 + \cos(\pi \, \tfrac{t - w}{T - w})\big), \quad t \ge w

    Example:
        >>> [round(warmup_cosine(t, 10), 2) for t in (0, 1, 2, 6, 9)]
        [0.04, 0.52, 1.0, 0.5, 0.04]
    """
    warmup = max(1, round(_WARMUP * total_steps))
    if step < warmup:
        return _WARMUP_START + (1.0 - _WARMUP_START) * step / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))


def held_out_metrics(
    classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor
) -> dict[str, float]:
    """``{"accuracy", "pointing_game"}`` of an eval-mode shapes classifier on pictures it never saw.

    The pointing game explains each picture's true class with CAM at ``cam_layer`` where CAM
    applies (a GAP or GMP head), with Grad-CAM at the same layer otherwise (shapes_fc, and
    shapes_vit at its last block's tokens).
    """
    explainer = (
        CAM(classifier.module, layer=classifier.cam_layer, fc=classifier.fc)
        if isinstance(classifier.module, (ShapesGAP, ShapesGMP))
        else GradCAM(classifier.module, layers=[classifier.cam_layer])
    )
    result = explainer(images, target=labels)
    return {
        "accuracy": (result.logits.argmax(dim=1) == labels).float().mean().item(),
        "pointing_game": pointing_game_hits(result.maps[classifier.cam_layer], masks).float().mean().item(),
    }


def _training_set(name: str, n_train: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``name``'s pictures and one-hot targets: ``n_train`` shapes, then clutter alone with all-zero targets.

    For ``shapes_shuffled`` the shapes' labels are permuted (seeded by ``seed``), so that a label
    says nothing about its picture; the networks of :data:`BIASES` see the pictures with their tag
    (the clutter alone has none, so a tag is a sign that some shape is there, but not which).
    """
    shapes = render_biased(n_train, seed, BIASES[name]) if name in BIASES else render(n_train, seed)
    labels = shapes.labels
    if name == "shapes_shuffled":
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    backgrounds = to_tensor(render_backgrounds(max(1, round(n_train * _BACKGROUND_SHARE)), seed))
    images = torch.cat([shapes.images, backgrounds])
    targets = torch.cat(
        [F.one_hot(labels, len(CLASSES)).float(), torch.zeros(len(backgrounds), len(CLASSES))]
    )
    return images, targets

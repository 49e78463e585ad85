r"""Adversarial examples in pixel space: FGSM and PGD.

* **FGSM** (Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015): one
  step of size :math:`\epsilon` along the sign of the loss's gradient,
  :math:`x' = \mathrm{clip}_{[0,1]}\big(x + \epsilon\,\mathrm{sign}(\nabla_x \mathcal{L}(f(x), y))\big)`.
* **PGD** (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR
  2018): ``steps`` such steps of size :math:`\alpha`, each followed by a projection back into the
  box :math:`\|x' - x\|_\infty \le \epsilon` and into :math:`[0, 1]`. It starts at :math:`x` (no
  random start), so the same call gives the same picture.

Untargeted attacks climb the cross-entropy of ``label`` (away from it); a ``target_class`` makes
PGD descend the cross-entropy of that class instead (towards it).

The budget is in **pixel values** in [0, 1], whatever the model's normalization: ``2/255`` moves
each colour channel of each pixel by at most two of its 256 levels, invisible to a person. The
attacks take and return the normalized tensor that :meth:`Classifier.preprocess` makes, and work
on it through :func:`to_pixels` and :func:`from_pixels`. Gradients are taken with respect to the
pixels only (``torch.autograd.grad``), so the model's parameters and their ``.grad`` are left
alone; passes hold the model's lock, so concurrent explanations never see them.

The Grad-CAM paper (Section 6.2) attacks a network until a wrong class wins, then shows that
Grad-CAM for the *true* class still finds the true object: the evidence is still there, it is the
decision that was pushed.

Example:
    >>> clf = gc.load_model("efficientnet_lite0")
    >>> x = clf.preprocess(gc.load_image("assets/images/chelsea.png"))
    >>> adversarial = attacks.pgd(clf, x, label=285, epsilon=2 / 255)    # 285: 'Egyptian cat'
    >>> float((attacks.to_pixels(clf, adversarial) - attacks.to_pixels(clf, x)).abs().max()) * 255
    2.0000...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .classifier import Classifier
from .explainers import GradCAM
from .hooks import exclusive_eval
from .maps import correlation

__all__ = ["AttackOutcome", "attack_and_explain", "fgsm", "from_pixels", "pgd", "to_pixels"]

Classes = int | Sequence[int] | torch.Tensor


def fgsm(clf: Classifier, x: torch.Tensor, label: Classes, epsilon: float = 2 / 255) -> torch.Tensor:
    """One signed-gradient step of size ``epsilon`` away from ``label``, in pixel space.

    Args:
        clf: the classifier (its ``mean`` and ``std`` say how ``x`` is normalized).
        x: ``(N, 3, H, W)`` normalized input, as :meth:`Classifier.preprocess` gives.
        label: the class to push away from, one for all or one per sample.
        epsilon: the largest change of any pixel value, in [0, 1] units.

    Returns:
        The attacked input, normalized like ``x``.
    """
    pixels = to_pixels(clf, x)
    gradient, _ = _loss_gradient(clf, pixels, _classes(label, len(x)).to(x.device))
    step = epsilon * gradient.sign()
    return from_pixels(clf, (pixels + step).clamp(0.0, 1.0))


def pgd(
    clf: Classifier,
    x: torch.Tensor,
    label: Classes,
    epsilon: float = 2 / 255,
    steps: int = 10,
    target_class: Classes | None = None,
    step_size: float | None = None,
    stop_when_flipped: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    r"""Projected gradient descent in the :math:`L_\infty` box of radius ``epsilon`` around ``x``.

    Args:
        clf, x, label, epsilon: as for :func:`fgsm`.
        steps: signed-gradient steps, each followed by the projection.
        target_class: if given, move towards this class (descend its cross-entropy) instead of
            away from ``label``.
        step_size: :math:`\alpha`; by default ``2.5 * epsilon / steps``, Madry et al.'s choice,
            which lets the walk reach the box's faces and move along them.
        stop_when_flipped: leave each sample as it is once its top-1 is no longer ``label`` (or
            is ``target_class``): the smallest change that flips it, within the budget, instead of
            the whole budget spent. It costs no extra pass (each step's forward pass tells).
        progress: called as ``progress(step, steps)`` after each step; an exception raised there
            stops the attack.

    Returns:
        The attacked input, normalized like ``x``.
    """
    if epsilon < 0 or steps < 1:
        raise ValueError(f"PGD needs epsilon >= 0 and steps >= 1; got epsilon={epsilon}, steps={steps}.")
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    targeted = target_class is not None
    classes = _classes(target_class if targeted else label, len(x)).to(x.device)
    pixels = to_pixels(clf, x)
    attacked = pixels.clone()
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for step in range(1, steps + 1):
        gradient, logits = _loss_gradient(clf, attacked, classes)
        if stop_when_flipped:
            top = logits.argmax(dim=1)
            done |= top == classes if targeted else top != classes
            if done.all():
                break
        direction = -gradient.sign() if targeted else gradient.sign()
        moved = torch.min(torch.max(attacked + alpha * direction, pixels - epsilon), pixels + epsilon).clamp(0.0, 1.0)
        attacked = torch.where(done.view(-1, 1, 1, 1), attacked, moved)
        if progress:
            progress(step, steps)
    return from_pixels(clf, attacked)


def to_pixels(clf: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Undo ``clf``'s normalization: ``x * std + mean``, pixel values in [0, 1]."""
    mean, std = _statistics(clf, x)
    return x.detach() * std + mean


def from_pixels(clf: Classifier, pixels: torch.Tensor) -> torch.Tensor:
    """Normalize pixel values in [0, 1] as ``clf`` expects: ``(pixels - mean) / std``."""
    mean, std = _statistics(clf, pixels)
    return (pixels - mean) / std


def _loss_gradient(
    clf: Classifier, pixels: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\nabla_{\text{pixels}}` of the summed cross-entropy of ``classes``, and the logits."""
    pixels = pixels.detach().requires_grad_(True)
    with exclusive_eval(clf.module), torch.enable_grad():
        logits = clf.module(from_pixels(clf, pixels))
        # Summed, not averaged: each sample's gradient is its own, whatever the batch.
        loss = F.cross_entropy(logits, classes, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, pixels)
    return gradient, logits.detach()


def _classes(classes: Classes, n: int) -> torch.Tensor:
    classes = torch.as_tensor(classes, dtype=torch.long).flatten()
    if classes.numel() == 1:
        return classes.expand(n)
    if classes.numel() != n:
        raise ValueError(f"Give one class, or one per sample ({n}); got {classes.numel()}.")
    return classes


def _statistics(clf: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(clf.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(clf.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return mean, std


@dataclass(frozen=True)
class AttackOutcome:
    """A PGD attack on a batch and Grad-CAM before and after it (the Grad-CAM paper's Section 6.2).

    Attributes:
        adversarial: the attacked input, normalized like the clean one.
        labels: ``(N,)`` the classes explained before and after: the ones attacked away from (the
            true or the clean top-1 class), or, for a targeted attack, the classes it started from.
        clean_probabilities, attacked_probabilities: ``(N, classes)`` softmax outputs.
        label_clean, label_attacked: ``(N, h, w)`` Grad-CAM of ``labels`` on the clean and on the
            attacked input, at the layer's resolution.
        new_attacked: ``(N, h, w)`` Grad-CAM of the attacked input's top-1 class.
    """

    adversarial: torch.Tensor
    labels: torch.Tensor
    clean_probabilities: torch.Tensor
    attacked_probabilities: torch.Tensor
    label_clean: torch.Tensor
    label_attacked: torch.Tensor
    new_attacked: torch.Tensor

    @property
    def new_classes(self) -> torch.Tensor:
        """``(N,)`` the attacked input's top-1 class."""
        return self.attacked_probabilities.argmax(dim=1)

    @property
    def flipped(self) -> torch.Tensor:
        """``(N,)`` bool: the attacked input's top-1 is no longer ``labels``."""
        return self.new_classes != self.labels

    def label_correlations(self) -> list[float]:
        """Pearson correlation of each sample's ``labels`` map before and after the attack."""
        return [correlation(a, b) for a, b in zip(self.label_clean, self.label_attacked)]


def attack_and_explain(
    clf: Classifier,
    x: torch.Tensor,
    labels: Classes,
    layer: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    **attack: object,
) -> AttackOutcome:
    """:func:`pgd` from ``labels`` (away from them, or towards ``attack["target_class"]``; ``attack``
    holds the settings), then Grad-CAM at ``layer`` (default ``clf.cam_layer``) for ``labels`` on both
    inputs and for the new top-1 on the attacked one.

    Example:
        >>> outcome = attack_and_explain(clf, x, labels=285, epsilon=2 / 255, steps=10)
        >>> outcome.flipped, outcome.label_correlations()
    """
    layer = layer or clf.cam_layer
    labels = _classes(labels, len(x)).to(x.device)
    adversarial = pgd(clf, x, labels, progress=progress, **attack)
    grad_cam = GradCAM(clf.module, layers=[layer])
    # One pass explains the labels on both inputs and gives both predictions; a second, on the
    # attacked input alone, explains its new top class (known only after the first).
    before_after = grad_cam(torch.cat([x, adversarial]), target=torch.cat([labels, labels]))
    clean_probabilities, attacked_probabilities = before_after.logits.softmax(dim=1).split(len(x))
    new = attacked_probabilities.argmax(dim=1)
    label_clean, label_attacked = before_after.maps[layer].split(len(x))
    new_attacked = grad_cam(adversarial, target=new).maps[layer]
    return AttackOutcome(
        adversarial, labels, clean_probabilities, attacked_probabilities, label_clean, label_attacked, new_attacked
    )

"""Deep Feature Factorization (Collins, Achanta and Süsstrunk, "Deep Feature Factorization for
Concept Discovery", ECCV 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..hooks import capture_outputs, check_layers, exclusive_eval
from ..tokens import family
from .base import as_batch, check_outputs

__all__ = ["Concepts", "deep_feature_factorization"]

# scikit-learn's NMF stops when a sweep's projected gradient falls below this fraction of the first's.
_TOLERANCE = 1e-4
# The logits must equal fc(GAP(A)) or fc(GMP(A)) to this relative tolerance for the scores to be the head's.
_HEAD_TOLERANCE = 1e-4
_POOLINGS = {"average": lambda a: a.mean(dim=(2, 3)), "max": lambda a: a.amax(dim=(2, 3))}


@dataclass(frozen=True)
class Concepts:
    """What :func:`deep_feature_factorization` finds in a layer.

    Attributes:
        layer: the layer factorized.
        maps: ``(N, k, h, w)``, where each of the ``k`` concepts is in each picture, at the layer's
            resolution, non-negative and not normalized (NMF leaves each concept's scale free).
        vectors: ``(k, K)``, each concept as activations of the layer's ``K`` channels.
        scores: ``(k, classes)``, the head's logits for each concept vector, or ``None`` without ``fc``.
    """

    layer: str
    maps: torch.Tensor
    vectors: torch.Tensor
    scores: torch.Tensor | None = None


def deep_feature_factorization(model: nn.Module, x: torch.Tensor, layer: str, concepts: int = 4,
                               fc: str | None = None, seed: int = 0, iterations: int = 200) -> Concepts:
    r"""Split a layer's activations into ``concepts`` parts that the pictures share: DFF.

    The activations of the ``N`` pictures are one matrix :math:`A` of ``K`` channels by
    ``N h w`` positions, shifted per channel by its minimum :math:`o` so that it is non-negative
    (after a ReLU :math:`o` is usually 0 and this is the paper's :math:`A`). Non-negative matrix
    factorization finds

    .. math::
        A - o\mathbf 1^T \approx W H, \qquad W \in \mathbb R_{\ge 0}^{K \times k},\;
        H \in \mathbb R_{\ge 0}^{k \times N h w}

    Row :math:`j` of :math:`H` is concept :math:`j`'s map over every picture; column :math:`j` of
    :math:`W` plus :math:`o` is its vector. As pytorch-grad-cam's ``DeepFeatureFactorization``,
    which calls scikit-learn's ``NMF(init="random", random_state=seed)``: the same random start, the
    same coordinate descent (Cichocki and Phan's HALS), the same stopping rule, here in torch. The
    pictures are factorized together, so a concept means the same in each of them.

    With ``fc``, the linear head after global pooling, each concept's ``scores`` are
    ``fc(vector)``: the classes a picture made of that concept alone would get. One forward pass
    without gradients, under the model's lock, in eval mode.

    Example:
        >>> c = deep_feature_factorization(model, x, "layer4", concepts=4, fc="fc")
        >>> c.maps.shape, c.scores.topk(3).indices       # (N, 4, 7, 7); each concept's top classes
    """
    layer = check_layers(model, layer)[0]
    _check_count("concepts", concepts)
    _check_count("iterations", iterations)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}.")
    head = None
    if fc is not None:
        head = dict(model.named_modules()).get(fc)
        if not isinstance(head, nn.Linear):
            found = "nothing" if head is None else type(head).__name__
            raise ValueError(f"fc must name one nn.Linear layer of the model; {fc!r} is {found}.")
    # the head is the model's own module: it is called under the lock too, where no other call's hook can fire
    with exclusive_eval(model), torch.no_grad():
        with capture_outputs(model, [layer]) as outputs:
            logits = model(as_batch(x))
        a = check_outputs(outputs, [layer])[layer].detach()
        n, channels, h, w = a.shape
        if concepts > channels:
            raise ValueError(f"concepts must be at most {layer!r}'s {channels} channels; got {concepts}.")
        if head is not None:
            _check_head(head, fc, layer, a, logits, family(model))
        data = a.transpose(0, 1).reshape(channels, n * h * w).double()
        offset = data.amin(dim=1, keepdim=True)
        vectors, maps = _nmf(data - offset, concepts, seed, iterations)
        vectors = (vectors + offset).T.to(a.dtype)
        scores = None if head is None else head(vectors).detach()
    return Concepts(layer, maps.view(concepts, n, h, w).transpose(0, 1).to(a.dtype).contiguous(), vectors, scores)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")


def _check_head(head: nn.Linear, fc: str, layer: str, a: torch.Tensor, logits: torch.Tensor, network: str) -> None:
    """A ``ValueError`` unless the logits are ``fc`` of ``layer`` pooled: only then do the scores mean classes."""
    if network != "CNN":
        raise ValueError(
            f"A {network}'s head reads its class token after a last norm, not {layer!r}'s patch tokens pooled, so "
            f"{fc!r} cannot score the concepts: their maps are shown without classes."
        )
    if head.in_features != a.shape[1]:
        why = "it flattens the feature maps" if head.in_features == a[0].numel() else "other layers come between"
        raise ValueError(
            f"{fc!r} takes {head.in_features} features and {layer!r} has {a.shape[1]} channels: the "
            f"concepts cannot be scored by this head ({why})."
        )
    scale = _HEAD_TOLERANCE * max(1.0, logits.abs().max().item())
    for pool in _POOLINGS.values():
        pooled = head(pool(a))
        if pooled.shape == logits.shape and (pooled - logits).abs().max().item() <= scale:
            return
    raise ValueError(
        f"The logits are not {fc}(global pooling of {layer!r}): other layers come between, so "
        f"{fc!r} cannot score the concepts."
    )


def _nmf(data: torch.Tensor, k: int, seed: int, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` (m, n) >= 0 -> ``W`` (m, k), ``H`` (k, n) >= 0 with ``data ≈ W H``: scikit-learn's ``NMF``
    with ``init="random"`` and ``solver="cd"``, whose updates run over rows independently, here all at once."""
    m, n = data.shape
    average = (data.mean() / k).sqrt().item()
    rng = np.random.RandomState(seed)
    # scikit-learn draws H first
    h = torch.from_numpy(np.abs(average * rng.standard_normal((k, n)))).to(data)
    w = torch.from_numpy(np.abs(average * rng.standard_normal((m, k)))).to(data)
    ht = h.T.contiguous()
    first = None
    for _ in range(iterations):
        violation = _sweep(data, w, ht) + _sweep(data.T, ht, w)
        first = violation if first is None else first
        if first == 0 or violation / first <= _TOLERANCE:
            break
    return w, ht.T


def _sweep(data: torch.Tensor, w: torch.Tensor, ht: torch.Tensor) -> float:
    """One pass of coordinate descent over the columns of ``w`` (in place) with ``ht`` fixed; returns the
    projected gradient's L1 norm met on the way, scikit-learn's measure of convergence."""
    hht = ht.T @ ht
    xht = data @ ht
    violation = torch.zeros((), dtype=data.dtype, device=data.device)
    for t, hessian in enumerate(hht.diagonal().tolist()):  # one read of the diagonal, not one sync per column
        grad = w @ hht[:, t] - xht[:, t]
        violation += torch.where(w[:, t] == 0, grad.clamp(max=0), grad).abs().sum()
        if hessian != 0:
            w[:, t] = (w[:, t] - grad / hessian).clamp(min=0)
    return violation.item()

"""What the perturbation methods share: batches of extra forward passes, counted for a progress bar.

They run after the shared pass, under the model's lock, without gradients. A ``progress`` callback
is called after each batch as ``progress(done, total)`` (forward passes of single images); an
exception raised in it stops the method at once (that is how the app cancels), and the call
leaves no hook and an unchanged model, as every call does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .base import LayerExplainer, Pass, Progress, Result, check_outputs, weighted_sum

__all__ = ["PerturbationCAM", "Tally", "chunks"]


class Tally:
    """Counts forward passes and reports them to an optional ``progress(done, total)``."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


def chunks(count: int, size: int) -> Iterator[range]:
    """``range(0, size)``, ``range(size, 2 * size)``, ... covering ``range(count)``."""
    for start in range(0, count, size):
        yield range(start, min(start + size, count))


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return batch_size


class PerturbationCAM(LayerExplainer):
    """A layer method whose channel weights come from forward passes of changed copies.

    A subclass says how many single-image passes a layer costs (:meth:`passes`) and scores the
    channels (:meth:`score_channels`); the map is ``ReLU(sum_k w_k A^k)``.
    """

    uses_gradients = False
    slow = True

    def __init__(self, model: nn.Module, layers: Sequence[str] | str, batch_size: int = 32,
                 progress: Progress | None = None):
        super().__init__(model, layers)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def from_pass(self, p: Pass) -> Result:
        check_outputs(p.activations, self.layers)
        tally = Tally(sum(self.passes(p.activations[layer]) for layer in self.layers), self.progress)
        with torch.no_grad():
            weights = {layer: self.score_channels(p, layer, tally) for layer in self.layers}
        maps = {layer: weighted_sum(weights[layer], p.activations[layer]) for layer in self.layers}
        return Result(maps, p.logits, p.targets, weights, {layer: p.activations[layer] for layer in self.layers})

    def passes(self, activations: torch.Tensor) -> int:
        """How many single-image forward passes the layer with these activations costs."""
        raise NotImplementedError

    def score_channels(self, p: Pass, layer: str, tally: Tally) -> torch.Tensor:
        """``(N, K)`` channel weights, advancing ``tally`` batch by batch."""
        raise NotImplementedError

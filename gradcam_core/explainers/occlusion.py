"""Occlusion (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014)."""

from __future__ import annotations

import torch
from torch import nn

from .base import InputExplainer, Pass, Progress
from .perturbation import Tally, check_batch_size, chunks

__all__ = ["Occlusion"]


class Occlusion(InputExplainer):
    r"""Slide a grey square over the image and watch the class score fall.

    For each position of a ``window`` x ``window`` square (every ``stride`` pixels, the last one
    flush with the edge) all channels under it are set to ``baseline`` in the model's input space
    (0 is the mean colour for a normalized input), and the drop of the class score
    :math:`y^c(x) - y^c(x_{\text{occluded}})` is recorded. Each pixel gets the mean drop over the
    windows that cover it:

    .. math::
        O^c(i, j) = \frac{1}{|W_{ij}|} \sum_{w \in W_{ij}} \big(y^c(x) - y^c(x \setminus w)\big)

    A direct measure of what the score depends on, at the price of one forward pass per window
    (``batch_size`` at a time). The Grad-CAM paper ranks maps by their correlation with it.

    Example:
        >>> o = Occlusion(model, window=32, stride=16)(x, target=243)   # (N, H, W)
    """

    slow = True

    def __init__(self, model: nn.Module, window: int = 32, stride: int = 16, baseline: float = 0.0,
                 batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model)
        for name, value in (("window", window), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}.")
        if stride > window:
            raise ValueError(f"stride ({stride}) must not exceed window ({window}): the pixels between two "
                             "windows would never be covered.")
        self.window, self.stride, self.baseline = window, stride, float(baseline)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def from_pass(self, p: Pass) -> torch.Tensor:
        n, _, height, width = p.x.shape
        corners = [(top, left) for top in _starts(height, self.window, self.stride)
                   for left in _starts(width, self.window, self.stride)]
        scores = p.logits.gather(1, p.targets[:, None])[:, 0]
        drops = torch.zeros(n, height, width, dtype=p.logits.dtype, device=p.x.device)
        cover = torch.zeros(height, width, dtype=p.logits.dtype, device=p.x.device)
        for top, left in corners:
            cover[top:top + self.window, left:left + self.window] += 1
        tally = Tally(n * len(corners), self.progress)
        with torch.no_grad():
            for i in range(n):
                for chunk in chunks(len(corners), self.batch_size):
                    copies = p.x[i].repeat(len(chunk), 1, 1, 1)
                    for j, (top, left) in enumerate(corners[chunk.start:chunk.stop]):
                        copies[j, :, top:top + self.window, left:left + self.window] = self.baseline
                    fallen = scores[i] - self.model(copies)[:, p.targets[i]]
                    for drop, (top, left) in zip(fallen, corners[chunk.start:chunk.stop]):
                        drops[i, top:top + self.window, left:left + self.window] += drop
                    tally.advance(len(chunk))
        return drops / cover


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets every ``stride`` pixels, the last one flush with the far edge."""
    last = max(size - window, 0)
    starts = list(range(0, last + 1, stride))
    return starts if starts[-1] == last else [*starts, last]

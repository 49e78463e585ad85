"""What LIME and Kernel SHAP share: superpixels, switched on and off, and the model's score on each
combination.

A picture is cut into superpixels (scikit-image's SLIC unless the caller gives the segments); a
coalition ``z`` in {0, 1}^M keeps the superpixels where ``z`` is 1 and sets the others to 0 in the
model's input space, the mean colour of a normalized input (captum's default baseline). Each
method says which coalitions it asks about and fits one weight per superpixel to the class
logits they give; every pixel of the map gets its superpixel's weight.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import InputExplainer, Pass, Progress
from .perturbation import Tally, check_batch_size, chunks
from .rise import check_count, check_seed

__all__ = ["SuperpixelExplainer", "superpixels"]


def superpixels(x: torch.Tensor, n_segments: int | None = None, compactness: float | None = None) -> torch.Tensor:
    """``(N, H, W)`` superpixel labels ``0 .. M - 1`` of each picture, by SLIC (Achanta et al., 2012).

    Each picture is min-max scaled to [0, 1] (the model's normalization is an affine map per
    channel, so the colours keep their order) and, with three channels, segmented in Lab colour.
    By default about one superpixel per 256 pixels, between 4 and 50: 50 for a 224x224 photo,
    4 for an 8x8 test input. Compactness 10 (SLIC's usual value for photos) from 32 pixels a side;
    below, the colours of a few pixels would shred the superpixels, so 100 keeps them compact.

    Example:
        >>> segments = superpixels(x)                                  # (1, 224, 224)
        >>> LIME(model, segments=segments[0])(x, 243)                  # the page shows both
    """
    from skimage.segmentation import slic

    x = torch.as_tensor(x).detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"Expected pictures of shape (N, C, H, W), got {tuple(x.shape)}.")
    height, width = x.shape[-2:]
    if n_segments is None:
        n_segments = min(50, max(4, height * width // 256))
    check_count("n_segments", n_segments)
    if compactness is None:
        compactness = 10.0 if min(height, width) >= 32 else 100.0
    if isinstance(compactness, bool) or not isinstance(compactness, (int, float)) or compactness <= 0:
        raise ValueError(f"compactness must be a positive number, got {compactness!r}.")
    out = []
    for picture in x.double().cpu():
        span = picture.max() - picture.min()
        image = ((picture - picture.min()) / span if span > 0 else picture * 0).permute(1, 2, 0).numpy()
        labels = slic(image, n_segments=n_segments, compactness=float(compactness), start_label=0, channel_axis=-1,
                      convert2lab=image.shape[-1] == 3)
        out.append(torch.from_numpy(np.unique(labels, return_inverse=True)[1].reshape(labels.shape)))
    return torch.stack(out).long().to(x.device)


class SuperpixelExplainer(InputExplainer):
    """A weight per superpixel, fitted to the class logits of pictures with some superpixels off.

    A subclass says which coalitions it evaluates (:meth:`coalitions`, drawn from the seed alone
    so a batch gives what each image alone gives) and how it fits the weights (:meth:`fit`).
    The picture with every superpixel on is the shared pass's: it is never run again.
    """

    slow = True

    def __init__(self, model: nn.Module, segments: torch.Tensor | np.ndarray | None = None, samples: int = 500, seed: int = 0, batch_size: int = 32,
                 progress: Progress | None = None):
        super().__init__(model)
        self.segments = _check_segments(segments)
        check_count("samples", samples)
        self.samples = samples
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def coalitions(self, features: int) -> torch.Tensor:
        """``(S, M)`` 0/1 rows (float64, on the CPU): the superpixels each evaluated picture keeps."""
        raise NotImplementedError

    def fit(self, z: torch.Tensor, scores: torch.Tensor, full: float) -> torch.Tensor:
        """``(M,)`` weights from the coalitions ``z``, their logits and the unperturbed logit."""
        raise NotImplementedError

    def from_pass(self, p: Pass) -> torch.Tensor:
        n, _, height, width = p.x.shape
        labels = self._labels(p.x)
        rows = [self.coalitions(int(labels[i].max()) + 1) for i in range(n)]
        # rows that keep everything are the unperturbed picture, already scored
        needed = [(z < 1).any(dim=1) for z in rows]
        tally = Tally(sum(int(r.sum()) for r in needed), self.progress)
        full = p.logits.gather(1, p.targets[:, None])[:, 0].double().cpu()
        maps = torch.zeros(n, height, width, dtype=p.logits.dtype, device=p.x.device)
        with torch.no_grad():
            for i in range(n):
                scores = full[i].repeat(len(rows[i]))
                todo = needed[i].nonzero().flatten()
                for chunk in chunks(len(todo), self.batch_size):
                    index = todo[chunk.start:chunk.stop]
                    keep = rows[i][index].to(device=p.x.device, dtype=p.x.dtype)[:, labels[i]]
                    scores[index] = self.model(p.x[i] * keep[:, None])[:, p.targets[i]].double().cpu()
                    tally.advance(len(index))
                weights = self.fit(rows[i], scores, float(full[i]))
                maps[i] = weights.to(device=p.x.device, dtype=maps.dtype)[labels[i]]
        return maps

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` labels ``0 .. M - 1`` for each picture: the given segments or SLIC's."""
        if self.segments is None:
            return superpixels(x)
        n, _, height, width = x.shape
        segments = self.segments.to(x.device)
        if segments.shape[-2:] != (height, width) or (segments.dim() == 3 and segments.shape[0] not in (1, n)):
            raise ValueError(f"segments has shape {tuple(segments.shape)}; the input needs (H, W) = "
                             f"({height}, {width}) or (N, H, W) with N = {n}.")
        segments = segments.expand(n, height, width)
        return torch.stack([torch.unique(s, return_inverse=True)[1] for s in segments])


def _check_segments(segments) -> torch.Tensor | None:
    if segments is None:
        return None
    try:
        segments = torch.as_tensor(np.asarray(segments) if not isinstance(segments, torch.Tensor) else segments)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"segments must be an (H, W) array of integer superpixel labels, got {segments!r}.") from None
    if segments.dim() not in (2, 3) or segments.is_floating_point() or segments.is_complex() \
            or segments.dtype == torch.bool or segments.numel() == 0:
        raise ValueError(f"segments must be an (H, W) or (N, H, W) array of integer superpixel labels, got "
                         f"{segments.dtype} of shape {tuple(segments.shape)}.")
    return segments.detach().long()

"""RISE (Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import InputExplainer, Pass, Progress
from .perturbation import Tally, check_batch_size, chunks

__all__ = ["RISE", "rise_masks"]


class RISE(InputExplainer):
    r"""The class probability of many randomly masked copies, each mask weighed by it.

    ``masks`` random binary ``grid`` x ``grid`` grids (each cell kept with probability ``p``) are
    upsampled bilinearly to :math:`(s + 1) \lceil H / s \rceil` and cropped at a random shift
    (:func:`rise_masks`, as the authors' ``generate_masks``), so that the masks are smooth and not
    aligned with a grid. Each masked copy :math:`I \odot M_i` goes through the model, and the map
    is the masks averaged with the class probability as weight:

    .. math::
        S^c = \frac{1}{N \, p} \sum_{i=1}^{N} P_c(I \odot M_i) \, M_i

    The mask multiplies the input in the model's input space, as in the authors' code: a masked
    pixel goes to 0, the mean colour of a normalized input. The masks are drawn from ``seed``
    alone, the same for every image, so a batch gives what each image alone gives. One forward
    pass per mask and image, ``batch_size`` at a time: the default 500 masks take about 15 s for
    EfficientNet-Lite0 at 224x224 on one CPU core (the paper used 4000 on a GPU; more masks, a
    smoother map).

    Example:
        >>> s = RISE(model, masks=500, grid=7, p=0.5, seed=0)(x, target=243)   # (N, H, W)
    """

    slow = True

    def __init__(self, model: nn.Module, masks: int = 500, grid: int = 7, p: float = 0.5, seed: int = 0,
                 batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model)
        check_count("masks", masks)
        check_count("grid", grid)
        self.masks, self.grid, self.p = masks, grid, _check_p(p)
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def from_pass(self, p: Pass) -> torch.Tensor:
        n, _, height, width = p.x.shape
        cells, shifts = _draw(self.masks, self.grid, self.p, (height, width), self.seed)
        saliency = torch.zeros(n, height, width, dtype=p.logits.dtype, device=p.x.device)
        tally = Tally(n * self.masks, self.progress)
        with torch.no_grad():
            for chunk in chunks(self.masks, self.batch_size):
                masks = _upsample(cells[chunk.start:chunk.stop], shifts[chunk.start:chunk.stop], (height, width))
                masks = masks.to(device=p.x.device, dtype=p.x.dtype)
                for i in range(n):
                    probabilities = self.model(p.x[i] * masks[:, None]).softmax(dim=1)[:, p.targets[i]]
                    saliency[i] += torch.einsum("b,bhw->hw", probabilities.to(saliency.dtype), masks)
                    tally.advance(len(chunk))
        return saliency / (self.masks * self.p)


def rise_masks(count: int, size: tuple[int, int], grid: int = 7, p: float = 0.5, seed: int = 0) -> torch.Tensor:
    """The ``(count, H, W)`` masks that :class:`RISE` with these options uses for an ``H`` x ``W`` input.

    As the authors' ``generate_masks``: cells kept with probability ``p``, upsampled bilinearly
    (scikit-image's ``resize(order=1, mode="reflect")``) to ``(grid + 1) * ceil(H / grid)`` rows
    and likewise columns, then cropped at a random offset below one cell.

    Example:
        >>> rise_masks(500, (224, 224)).shape
        torch.Size([500, 224, 224])
    """
    check_count("count", count)
    check_count("grid", grid)
    cells, shifts = _draw(count, grid, _check_p(p), tuple(size), check_seed(seed))
    return _upsample(cells, shifts, tuple(size)).float()


def _draw(count: int, grid: int, p: float, size: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(count, grid, grid)`` binary cells and ``(count, 2)`` shifts, on the CPU so every device
    draws the same masks."""
    g = torch.Generator().manual_seed(seed)
    cells = (torch.rand(count, grid, grid, generator=g) < p).double()
    shifts = torch.stack([torch.randint(0, math.ceil(side / grid), (count,), generator=g) for side in size], dim=1)
    return cells, shifts


def _upsample(cells: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling as one matrix per axis, rows taken from the shift on."""
    grid = cells.shape[-1]
    rows, columns = (_interpolation(grid, (grid + 1) * math.ceil(side / grid)) for side in size)
    rows = rows[shifts[:, :1] + torch.arange(size[0])]  # (n, H, grid)
    columns = columns[shifts[:, 1:] + torch.arange(size[1])]  # (n, W, grid)
    return torch.einsum("nhs,nst,nwt->nhw", rows, cells, columns)


def _interpolation(cells: int, out: int) -> torch.Tensor:
    """``(out, cells)``: linear interpolation from ``cells`` to ``out`` samples, pixel centres
    aligned, mirrored at the edges (about the edge cell's centre, as scikit-image's "reflect")."""
    u = (torch.arange(out, dtype=torch.float64) + 0.5) * cells / out - 0.5
    low = u.floor()
    frac = u - low
    low = low.long()
    matrix = torch.zeros(out, cells, dtype=torch.float64)
    for index, weight in ((low, 1 - frac), (low + 1, frac)):
        index = index.abs()  # below 0: mirrored about cell 0
        index = torch.where(index > cells - 1, 2 * (cells - 1) - index, index).clamp(0, cells - 1)
        matrix.index_put_((torch.arange(out), index), weight, accumulate=True)
    return matrix


def check_count(name: str, value: int) -> None:
    """A ``ValueError`` naming ``name`` unless ``value`` is a positive ``int`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"p (the share of cells kept) must be in (0, 1], got {p!r}.")
    return float(p)


def check_seed(seed: int) -> int:
    """``seed`` if it is a non-negative ``int`` (not a bool), else a ``ValueError`` naming it."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    return seed

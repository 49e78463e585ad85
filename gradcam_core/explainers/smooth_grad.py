"""SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", ICML workshop 2017),
SmoothGrad² and VarGrad (Adebayo et al., "Local Explanation Methods for Deep Neural Networks Lack
Sensitivity to Parameter Randomization", ICLR workshop 2018)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .base import Explainer, InputExplainer, Needs, Pass, Progress, Result, run
from .paths import check_count, check_seed, check_share
from .perturbation import Tally, check_batch_size, chunks

__all__ = ["SmoothGrad"]

#: How the samples' maps are combined: their mean, the mean of their squares, their variance.
VARIANTS = ("mean", "squared", "var")
#: The kinds of :data:`~.registry.METHODS` whose maps are pictures ``(N, C, H, W)`` it can smooth.
WRAPPABLE_KINDS = ("input gradient", "path gradient")


class SmoothGrad(InputExplainer):
    r"""A pixel-space gradient method averaged over noisy copies of the picture.

    .. math::
        \hat M^c(x) = \frac{1}{n} \sum_{i=1}^{n} M^c(x + \varepsilon_i), \qquad
        \varepsilon_i \sim \mathcal{N}\big(0, \sigma^2\big), \quad
        \sigma = \text{noise} \cdot (\max x - \min x)

    ``method`` is any pixel-space method of :data:`~.registry.METHODS` of the input-gradient or
    path-gradient kind (``"saliency"``, ``"input_x_gradient"``, ``"guided_backprop"``,
    ``"integrated_gradients"``, ...; ``method_options`` are its own options). The gradient of a
    ReLU network jumps from pixel to pixel; averaging it over ``samples`` nearby pictures keeps
    what they share, the object's outline. ``variant`` ``"squared"`` averages the squared maps
    (SmoothGrad²), ``"var"`` takes their variance (VarGrad, Adebayo et al. 2018):

    .. math::
        \text{SG}^2 = \frac{1}{n} \sum_i M^c(x + \varepsilon_i)^2, \qquad
        \text{VG} = \text{SG}^2 - \hat M^{c\,2}

    The noise is drawn from ``seed`` alone, the same draw scaled by each image's own range, so a
    batch item equals that image explained alone and the same seed gives the same map. The noisy
    copies go through the wrapped method ``batch_size`` at a time (one gradient pass each for the
    shared-pass methods; a path method makes its own passes, ``batch_size`` points at a time).

    What comes from the shared pass: the targets (each copy is explained for the class of the
    clean picture) and, with ``noise=0``, the whole map: every sample is then the picture itself,
    so the wrapped method reads the shared pass (``saliency``'s gradient is not computed again in
    the same :func:`~gradcam_core.explain` call) and no copy is made.

    Example:
        >>> m = SmoothGrad(model, samples=25, noise=0.15)(x, target=243)     # (N, 3, H, W)
        >>> SmoothGrad(model, method="integrated_gradients", method_options={"steps": 8},
        ...            variant="squared")(x, 243)
    """

    slow = True

    def __init__(self, model: nn.Module, method: str = "saliency", samples: int = 25, noise: float = 0.15,
                 variant: str = "mean", seed: int = 0, method_options: Mapping[str, object] | None = None,
                 batch_size: int = 32, progress: Progress | None = None):
        super().__init__(model)
        self.samples = check_count(samples, "samples")
        self.noise = check_share(noise, "noise")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be {', '.join(map(repr, VARIANTS))}, got {variant!r}.")
        self.variant = variant
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress
        self.method = method
        if method_options is not None and not isinstance(method_options, Mapping):
            raise ValueError(f"method_options must be a mapping of {method}'s options, got {method_options!r}.")
        self.method_options = dict(method_options or {})
        wrapped = self._wrapped(None)
        #: Gradient passes per image (none of its own for a noise-free shared-pass method).
        self.passes = getattr(wrapped, "passes", 1) * (self.samples if self.noise else 1)
        self._needs = wrapped.needs() if self.noise == 0 else Needs()

    def _wrapped(self, progress: Progress | None) -> Explainer:
        """The wrapped method's explainer, reporting to ``progress`` if it is slow."""
        from .registry import METHODS  # the registry imports this module

        entry = METHODS.get(self.method)
        if entry is None or entry.layered or entry.kind not in WRAPPABLE_KINDS or entry.cls is SmoothGrad:
            allowed = [name for name, m in METHODS.items()
                       if not m.layered and m.kind in WRAPPABLE_KINDS and m.cls is not SmoothGrad]
            raise ValueError(f"method must be a pixel-space gradient method: {', '.join(allowed)}; "
                             f"got {self.method!r}.")
        options = dict(self.method_options)
        if entry.slow:
            options.setdefault("batch_size", self.batch_size)
            options["progress"] = progress
        return entry.create(self.model, None, **options)

    def needs(self) -> Needs:
        return self._needs

    def from_pass(self, p: Pass) -> torch.Tensor:
        x, n = p.x, p.x.shape[0]
        tally = Tally(n * self.passes, self.progress)
        relayed = 0

        def relay(done: int, total: int) -> None:
            nonlocal relayed
            tally.advance(done - relayed)
            relayed = done

        wrapped = self._wrapped(relay)
        if self.noise == 0:
            m = _picture(wrapped.from_pass(p), x)
            return {"mean": m, "squared": m * m, "var": torch.zeros_like(m)}[self.variant]
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        noise = torch.randn((self.samples, *x.shape[1:]), generator=generator, dtype=x.dtype, device=x.device)
        sigma = self.noise * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))
        sums, squares = torch.zeros_like(x), torch.zeros_like(x)
        for chunk in chunks(n * self.samples, self.batch_size):
            index = torch.arange(chunk.start, chunk.stop, device=x.device)
            image, sample = index // self.samples, index % self.samples
            copies = x[image] + sigma[image].view(-1, 1, 1, 1) * noise[sample]
            relayed = 0
            _, (output,) = run(p.model, copies, p.targets[image], [wrapped])
            m = _picture(output.value, copies)
            sums.index_add_(0, image, m)
            squares.index_add_(0, image, m * m)
            if not wrapped.slow:
                tally.advance(len(chunk))
        mean, mean_square = sums / self.samples, squares / self.samples
        return {"mean": mean, "squared": mean_square, "var": mean_square - mean * mean}[self.variant]


def _picture(value: object, x: torch.Tensor) -> torch.Tensor:
    m = value.maps["input"] if isinstance(value, Result) else value
    if not isinstance(m, torch.Tensor) or m.shape != x.shape:
        raise ValueError(f"SmoothGrad needs a picture the shape of the input {tuple(x.shape)}; the wrapped "
                         f"method gave {getattr(m, 'shape', type(m).__name__)}.")
    return m

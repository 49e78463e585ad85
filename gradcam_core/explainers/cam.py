"""CAM (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016)."""

from __future__ import annotations

import torch
from torch import nn

from .base import LayerExplainer, Pass

__all__ = ["CAM"]

# The head's output must equal fc(GAP(A)) or fc(GMP(A)) to this relative tolerance for CAM to apply.
_HEAD_TOLERANCE = 1e-4
# Global pooling heads CAM applies to: name -> the pooling of (N, K, h, w) maps to (N, K).
_POOLINGS = {
    "global average pooling": lambda a: a.mean(dim=(2, 3)),
    "global max pooling": lambda a: a.amax(dim=(2, 3)),
}


class CAM(LayerExplainer):
    r"""Class activation mapping, for a last conv layer followed by global pooling and one linear layer.

    .. math::
        L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big)

    where :math:`w_k^c` is the weight of the linear layer ``fc`` from channel ``k`` to class
    ``c``. The paper shows the positive part of :math:`\sum_k w_k^c A^k`; the ReLU keeps that part
    and puts CAM on Grad-CAM's footing, so that at this layer the two agree after normalization.

    CAM only applies when the logits are exactly ``fc(GAP(A))``, or ``fc(GMP(A))``: the paper
    compares global average pooling with global max pooling, whose map is the same weighted sum
    (but GMP scores each channel by its one strongest cell, so training shapes the maps
    differently). Each call checks that on the forward pass it makes, and raises a ``ValueError``
    that says what it found (a flatten, more linear layers, no pooling) and points to
    :class:`GradCAM`, which needs no such head.

    ``fc`` names the linear layer; by default it is the model's last ``nn.Linear``.

    Example:
        >>> result = CAM(model, layer="layer4", fc="fc")(x, target=281)   # 281: 'tabby'
        >>> result.weights["layer4"]     # (N, 512): w_k^c for each sample's class
    """

    families = ("CNN",)
    refusal = (
        "it needs the logits to be a linear layer of globally pooled maps, and a transformer's head "
        "reads a normalized class token. Grad-CAM explains its tokens."
    )

    uses_gradients = False

    def __init__(self, model: nn.Module, layer: str, fc: str | None = None):
        super().__init__(model, [layer])
        self.layer = layer
        self.fc_name = fc if fc is not None else _last_linear(model)
        self.fc = dict(model.named_modules()).get(self.fc_name)
        if not isinstance(self.fc, nn.Linear):
            found = "nothing" if self.fc is None else type(self.fc).__name__
            raise ValueError(
                f"CAM needs the classifier {fc!r} to be one nn.Linear layer; found {found}. "
                "Use GradCAM, which works with any head."
            )

    def channel_weights(self, p: Pass, layer: str) -> torch.Tensor:
        self._check_head(p.activations[layer], p.logits)
        return self.fc.weight[p.targets].detach()

    def _check_head(self, a: torch.Tensor, logits: torch.Tensor) -> None:
        channels, fc_in = a.shape[1], self.fc.in_features
        if channels != fc_in:
            raise ValueError(
                f"CAM needs {self.layer!r} -> global average (or max) pooling -> {self.fc_name!r}, but "
                f"{self.fc_name!r} takes {fc_in} features and {self.layer!r} has {channels} "
                f"channels of {a.shape[2]}x{a.shape[3]}: this head "
                f"{'flattens the feature maps' if fc_in == a[0].numel() else 'has other layers'} "
                "instead of averaging each channel. Use GradCAM, which works with any head."
            )
        scale = _HEAD_TOLERANCE * max(1.0, logits.abs().max().item())
        gaps = {}
        for name, pool in _POOLINGS.items():  # the average first: most heads need no second try
            with torch.no_grad():
                pooled = self.fc(pool(a))
            if pooled.shape != logits.shape:
                raise ValueError(
                    f"CAM needs the logits to be {self.fc_name}(GAP({self.layer})), but "
                    f"{self.fc_name!r} gives {pooled.shape[1]} outputs and the model "
                    f"{logits.shape[1]}: there are other layers between {self.fc_name!r} and the "
                    "output. Use GradCAM, which works with any head."
                )
            gaps[name] = (pooled - logits).abs().max().item()
            if gaps[name] <= scale:
                return
        raise ValueError(
            f"CAM needs the logits to be {self.fc_name}(GAP({self.layer})) (or GMP), but they "
            f"differ from it by up to {gaps['global average pooling']:.3g}: there are other layers "
            f"between {self.layer!r} and the output. Use GradCAM, which works with any head."
        )


def _last_linear(model: nn.Module) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("CAM needs a linear classifier after global pooling; this model has no nn.Linear.")
    return names[-1]

"""What the reference libraries need to be compared with ours fairly; the tests and benchmarks/bench_methods.py
both use it.

* :func:`captum_ready`: captum's DeepLift refuses a ReLU module called twice (ResNet's BasicBlock) and
  goes wrong when one hooked module feeds another directly (the stem's ReLU into the max pool).
* :func:`signed_like_ours`: pytorch-grad-cam keeps whatever sign the SVD returns for a principal
  component; ours makes it correlate positively with the layer's sum.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torchvision
from torch import nn

__all__ = ["Clone", "captum_ready", "signed_like_ours"]


class Clone(nn.Module):
    def forward(self, x):
        return x.clone()


def captum_ready(model: nn.Module) -> nn.Module:
    """A copy of a torchvision ResNet captum can hook: one ReLU module a call, a clone before the max pool."""
    model = copy.deepcopy(model)
    for block in model.modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            block.relu_out = nn.ReLU()

            def forward(x, self=block):
                identity = x if self.downsample is None else self.downsample(x)
                out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
                return self.relu_out(out + identity)

            block.forward = forward
    model.maxpool = nn.Sequential(Clone(), model.maxpool)
    return model


def signed_like_ours(get_2d_projection: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """pytorch-grad-cam's ``get_2d_projection`` with each projection signed as ours: positively correlated
    with the sum over channels."""

    def signed(batch: np.ndarray) -> np.ndarray:
        projections = get_2d_projection(batch)
        for projection, reference in zip(projections, batch.sum(axis=1)):
            if ((projection - projection.mean()) * (reference - reference.mean())).sum() < 0:
                projection *= -1
        return projections

    return signed

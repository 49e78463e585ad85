"""The rest of a network after one of its layers, as a function of that layer's output.

Ablation-CAM asks what the score becomes when one channel of a layer is zeroed, once per channel.
Running the whole network again for each copy repeats the layers before the one ablated, whose
output is already known. :func:`split_at` traces the model with ``torch.fx`` (through the modules
that hold the layer only; every other module, the layer included, stays one call) and returns the
part of the graph that depends on the layer's output, so the copies run through that part alone. The traced graph calls the model's own modules: it shares their
weights, buffers, training flags and hooks, and copies nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import fx, nn

__all__ = ["Split", "split_at"]

#: torch.fx patches ``nn.Module.__call__`` for the whole process while it traces, and restores it
#: after: two traces at once, in two threads, can restore each other's patch and leave every module
#: of the process calling into a finished tracer. One trace at a time.
_TRACING = threading.Lock()


@dataclass(frozen=True)
class Split:
    """A model cut after ``layer``.

    Attributes:
        layer: the layer's name.
        rest: ``rest(layer_output, *side_inputs) -> model output``.
        prefix: ``prefix(x) -> tuple of side_inputs``, the values computed before ``layer`` that
            the rest uses besides its output (a residual connection around the layer); ``None``
            when there are none, as at the boundary between stages.
    """

    layer: str
    rest: fx.GraphModule
    prefix: fx.GraphModule | None


def split_at(model: nn.Module, layer: str) -> Split:
    """Trace ``model`` and cut it after ``layer``; a ``ValueError`` says why when it cannot.

    Example:
        >>> split = split_at(resnet, "layer4")
        >>> split.rest(activations).shape        # logits from layer4's output: pooling and fc only
        torch.Size([1, 1000])
    """

    class KeepLayer(fx.Tracer):
        # Only the modules that hold the layer are traced through; every other one stays one call,
        # so its own code (timm's blocks branch on shapes) never meets the tracer.
        def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
            return not layer.startswith(f"{qualified_name}.")

    try:
        with _TRACING:
            graph = KeepLayer().trace(model)
    except Exception as error:  # tracing runs the model's own Python code on proxies
        raise ValueError(
            f"{type(model).__name__} cannot be traced by torch.fx ({error}), so the network after "
            f"{layer!r} cannot be run on its own. Use Score-CAM, which only needs forward passes."
        ) from None
    calls = [node for node in graph.nodes if node.op == "call_module" and node.target == layer]
    if len(calls) != 1:
        raise ValueError(f"{layer!r} is called {len(calls)} times in the forward pass; it must be called once.")
    start = calls[0]
    downstream = {start}
    for node in graph.nodes:  # nodes come in the order they run
        if any(arg in downstream for arg in node.all_input_nodes):
            downstream.add(node)
    output = next(node for node in graph.nodes if node.op == "output")
    if output not in downstream:
        raise ValueError(f"The model's output does not depend on {layer!r}.")
    sides = list(dict.fromkeys(
        arg for node in graph.nodes if node in downstream and node is not start
        for arg in node.all_input_nodes if arg not in downstream and arg.op != "get_attr"
    ))
    return Split(layer, _rest(model, graph, start, downstream, sides), _prefix(model, graph, sides) if sides else None)


def _rest(model: nn.Module, graph: fx.Graph, start: fx.Node, downstream: set, sides: list) -> fx.GraphModule:
    rest = fx.Graph()
    env = {start: rest.placeholder("layer_output")}
    env.update({node: rest.placeholder(f"side_{i}") for i, node in enumerate(sides)})
    for node in graph.nodes:
        if node.op == "get_attr":
            env[node] = rest.node_copy(node)
        elif node in downstream and node is not start:
            env[node] = rest.node_copy(node, env.__getitem__)
    return _module(model, rest)


def _prefix(model: nn.Module, graph: fx.Graph, sides: list) -> fx.GraphModule:
    prefix = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node.op == "output":
            break
        env[node] = prefix.node_copy(node, env.__getitem__)
    prefix.output(tuple(env[node] for node in sides))
    return _module(model, prefix)


def _module(model: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    module = fx.GraphModule(model, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module


def side_inputs(split: Split, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The values :attr:`Split.rest` needs besides the layer's output, for the input ``x``."""
    return () if split.prefix is None else tuple(split.prefix(x))

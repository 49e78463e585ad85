"""Every method in one table: the pages, the command line and :func:`~.explain.explain` read it.

A new method is one module and one entry here; nothing else needs an edit to offer it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from ..tokens import family
from .ablation_cam import AblationCAM
from .attention_rollout import AttentionRollout
from .base import Explainer
from .cam import CAM
from .contrastive_grad_cam import ContrastiveGradCAM
from .deconvnet import Deconvnet
from .deep_lift import DeepLift
from .eigen_cam import EigenCAM
from .eigen_grad_cam import EigenGradCAM
from .extremal_perturbation import ExtremalPerturbation
from .fem import FEM
from .finer_cam import FinerCAM
from .full_grad import FullGrad
from .grad_cam import GradCAM
from .grad_cam_element_wise import GradCAMElementWise
from .grad_cam_plus_plus import GradCAMPlusPlus
from .gradient_shap import GradientShap
from .guided import GuidedBackprop, GuidedGradCAM
from .hires_cam import HiResCAM
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .is_cam import ISCAM
from .kernel_shap import KernelSHAP
from .kpca_cam import KPCACAM
from .layer_cam import LayerCAM
from .legrad import LeGrad
from .lime import LIME
from .lrp import LRP
from .occlusion import Occlusion
from .random_cam import RandomCAM
from .rise import RISE
from .saliency import Saliency
from .score_cam import ScoreCAM
from .shapley_cam import ShapleyCAM
from .smooth_grad import SmoothGrad
from .smooth_grad_cam_pp import SmoothGradCAMPlusPlus
from .ss_cam import SSCAM
from .transformer_attribution import TransformerAttribution
from .xgrad_cam import XGradCAM

__all__ = ["KINDS", "METHODS", "Method", "methods_for"]

#: Kind -> what the methods of that kind read, in the order the pages group them.
KINDS = {
    "CAM head": "the weights of a linear layer after global average pooling; one forward pass",
    "layer gradient": "a layer's activations and the gradient of the score there; one forward and one backward pass",
    "layer activation": "a layer's activations alone; one forward pass",
    "perturbation": "forward passes of changed copies, batched: slow",
    "input gradient": "the gradient at the pixels, some with a rule changed at each ReLU; one forward and one "
    "backward pass",
    "path gradient": "the gradient at the pixels of many changed copies of the picture (a path from a baseline, "
    "or noisy copies), batched",
    "relevance": "the score passed back layer by layer with a rule that conserves it; one forward and one "
    "backward pass",
    "attention": "a Vision Transformer's attention maps, block by block, from the class token to the patches; one "
    "forward pass, and a backward pass for the class-specific ones",
}


@dataclass(frozen=True)
class Method:
    """One explanation method.

    Attributes:
        name: the key in :data:`METHODS` (and on the command line).
        cls: the class that computes it.
        label: its name for people.
        paper: authors and venue.
        year: the year of the paper.
        kind: one of :data:`KINDS`.
        class_specific: whether its map changes with the class explained.
        layered: whether it explains named layers (its maps at the layer's resolution) or the
            input's pixels (``(N, C, H, W)``, or ``(N, H, W)`` for occlusion).
        summary: what it changes, and when it helps, in two sentences.
        stochastic: whether it draws random masks or noise (it then takes ``seed``, and the same
            seed gives the same map).
        picture: whether its ``(N, 3, H, W)`` result is a picture to show as it is (guided
            backprop's edges), rather than an attribution whose strength at each pixel is drawn as heat.
        options: the keyword options its constructor takes besides the model and layers.
        build: ``build(model, layers, **options)`` -> an explainer; by default ``cls(model, layers,
            **options)`` for layer methods and ``cls(model, **options)`` for the others.
    """

    name: str
    cls: type[Explainer]
    label: str
    paper: str
    year: int
    kind: str
    class_specific: bool
    layered: bool
    summary: str
    options: tuple[str, ...] = ()
    stochastic: bool = False
    picture: bool = False
    build: Callable[..., Explainer] | None = None

    @property
    def slow(self) -> bool:
        return self.cls.slow

    @property
    def families(self) -> tuple[str, ...]:
        """The families of networks it explains (:data:`~.base.FAMILIES`): the attention methods
        a ViT's only; CAM, ShapleyCAM, Ablation-CAM, LRP and DeepLIFT a CNN's only."""
        return self.cls.families

    @property
    def needs(self) -> str:
        return KINDS[self.kind]

    def create(self, model: nn.Module, layers: Sequence[str] | None = None, **options) -> Explainer:
        """The explainer for ``model`` at ``layers`` (ignored by the pixel-space methods).

        Raises:
            ValueError: an option it does not take, no layer for a layer method, or a network of a
                family it does not explain.
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"{self.label} takes no option {', '.join(unknown)}; it takes {', '.join(self.options) or 'none'}."
            )
        if self.build is not None:
            return self.build(model, layers, **options)
        if not self.layered:
            return self.cls(model, **options)
        if not layers:
            raise ValueError(f"{self.label} explains named layers: give at least one.")
        return self.cls(model, list(layers), **options)


def _cam(model: nn.Module, layers: Sequence[str] | None, **options) -> CAM:
    if not layers:
        raise ValueError("CAM explains the layer before global average pooling: name it.")
    return CAM(model, layers[-1], **options)


_PERTURBATION = ("batch_size", "progress")

#: Method name -> :class:`Method`, in the order the gallery lists them.
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("cam", CAM, "CAM", "Zhou et al., CVPR", 2016, "CAM head", True, True,
           "The classifier's own weights, applied to the last feature maps instead of to their averages. "
           "Exact and free, but only for a network that ends in global average pooling and one linear layer: "
           "it explains the last layer (the other layers are left blank).",
           options=("fc",), build=_cam),
    Method("grad_cam", GradCAM, "Grad-CAM", "Selvaraju et al., ICCV", 2017, "layer gradient", True, True,
           "CAM's weights measured as the average gradient of the score over each map, so any layer of any "
           "network can be explained. The reference the others improve on: coarse, and one large object "
           "outweighs several small ones.",
           options=("counterfactual",)),
    Method("grad_cam_plus_plus", GradCAMPlusPlus, "Grad-CAM++", "Chattopadhyay et al., WACV", 2018,
           "layer gradient", True, True,
           "Weighs each position's positive gradient with its own coefficient instead of averaging, so that "
           "every instance of the class counts, not just the largest. Helps when the class appears several "
           "times in the picture."),
    Method("xgrad_cam", XGradCAM, "XGrad-CAM", "Fu et al., BMVC", 2020, "layer gradient", True, True,
           "Averages the gradient where the channel is active rather than everywhere, which makes the map "
           "add up to the score as nearly as possible. Equals Grad-CAM at a GAP head; differs where the "
           "layer is followed by more than pooling."),
    Method("layer_cam", LayerCAM, "LayerCAM", "Jiang et al., IEEE TIP", 2021, "layer gradient", True, True,
           "Keeps each position's own positive gradient instead of one weight per channel. The early "
           "layers, blurry under Grad-CAM, give sharp, object-shaped maps."),
    Method("hires_cam", HiResCAM, "HiResCAM", "Draelos and Carin, arXiv", 2020, "layer gradient", True, True,
           "Multiplies gradient and activation position by position, without averaging. Each cell then "
           "shows what it adds to the score when the head is linear; equals Grad-CAM at a GAP head."),
    Method("smooth_grad_cam_pp", SmoothGradCAMPlusPlus, "Smooth Grad-CAM++", "Omeiza et al., arXiv", 2019,
           "layer gradient", True, True,
           "Grad-CAM++ with the gradients averaged over noisy copies of the picture, as SmoothGrad does at the "
           "pixels. Calmer maps inside the network, one forward and one backward pass per copy; at the last "
           "layer before the pooling it is Grad-CAM++.",
           options=("samples", "noise", "seed", *_PERTURBATION), stochastic=True),
    Method("finer_cam", FinerCAM, "Finer-CAM", "Zhang et al., CVPR", 2025, "layer gradient", True, True,
           "Grad-CAM of the class's score minus the scores of its most similar classes (the nearest logits), "
           "each weighed by its probability. What similar classes share cancels, leaving the details that tell "
           "them apart: a bird's markings rather than the whole bird.",
           options=("comparisons", "alpha")),
    Method("contrastive_grad_cam", ContrastiveGradCAM, "Contrastive Grad-CAM", "Prabhushankar et al., ICIP", 2020,
           "layer gradient", True, True,
           "Grad-CAM of the difference between two classes' scores: why this class rather than that one (by "
           "default the runner-up)? Shows the evidence that separates the two, not what they have in common.",
           options=("versus",)),
    Method("grad_cam_element_wise", GradCAMElementWise, "Element-wise Grad-CAM", "Gildenblat et al., pytorch-grad-cam", 2021,
           "layer gradient", True, True,
           "Multiplies gradient and activation cell by cell and keeps only the positive products before adding "
           "up the channels, so a channel that argues against the class cannot cancel one that argues for it. "
           "Fuller maps than HiResCAM, which rectifies only the sum."),
    Method("eigen_grad_cam", EigenGradCAM, "Eigen-Grad-CAM", "Gildenblat et al., pytorch-grad-cam", 2021, "layer gradient", True, True,
           "The first principal component of gradient times activation: Eigen-CAM made class-specific. "
           "Cleaner than Grad-CAM where many channels add noise; its sign follows the summed contributions."),
    Method("shapley_cam", ShapleyCAM, "ShapleyCAM", "Cai, arXiv", 2025, "layer gradient", True, True,
           "Grad-CAM's channel weights corrected by the second derivative of the score (the gradient minus half "
           "the Hessian times the activation), which approximates each channel's Shapley value. On a network of "
           "ReLUs and linear layers the correction is zero and it is Grad-CAM; it differs after smooth activations.",),
    Method("full_grad", FullGrad, "FullGrad", "Srinivas and Fleuret, NeurIPS", 2019, "layer gradient", True, False,
           "The input gradient times the pixels plus, at every layer, the gradient at its bias times the bias, "
           "each made a picture and all summed: together they account for the whole score. Sharper than "
           "Grad-CAM and calmer than the plain gradient; it reads every layer, so it explains none by name."),
    Method("eigen_cam", EigenCAM, "Eigen-CAM", "Muhammad and Yeasin, IJCNN", 2020, "layer activation", False, True,
           "The first principal component of the feature maps: no gradient, no class. It shows what the "
           "layer sees most, the same map for every class, and is robust where gradients are noisy."),
    Method("kpca_cam", KPCACAM, "KPCA-CAM", "Karmani et al., arXiv", 2024, "layer activation", False, True,
           "Eigen-CAM with a kernel: the first principal component in a feature space where curved patterns "
           "become straight (a sigmoid kernel by default). No gradient and no class; it can separate what "
           "Eigen-CAM blends.",
           options=("kernel", "gamma")),
    Method("fem", FEM, "FEM", "Fuad et al., IPTA", 2020, "layer activation", False, True,
           "Weighs each channel by the share of its cells that stand out, more than k standard deviations above "
           "its mean: channels that fire on one part count, channels active everywhere do not. No gradient and "
           "no class.",
           options=("k",)),
    Method("random_cam", RandomCAM, "Random-CAM", "Gildenblat et al., pytorch-grad-cam", 2021, "layer activation", False, True,
           "Weighs the channels with random numbers between -1 and 1: a map that knows the layer but nothing of "
           "the class. The baseline of every evaluation: a method has to beat it to have shown anything.",
           options=("seed",), stochastic=True),
    Method("score_cam", ScoreCAM, "Score-CAM", "Wang et al., CVPR workshops", 2020, "perturbation", True, True,
           "Weighs each channel by the class probability of the image masked by that channel: no gradient, "
           "so no gradient noise or saturation. One forward pass per channel: slow.",
           options=_PERTURBATION),
    Method("ablation_cam", AblationCAM, "Ablation-CAM", "Desai and Ramaswamy, WACV", 2020, "perturbation", True,
           True,
           "Weighs each channel by how much the score falls when the channel is zeroed. Gradient-free like "
           "Score-CAM; the ablated copies run through the rest of the network only, so the last layer is cheap.",
           options=_PERTURBATION),
    Method("ss_cam", SSCAM, "SS-CAM", "Wang, Naidu et al., arXiv", 2020, "perturbation", True, True,
           "Score-CAM with noise added to each channel's mask, the class probability averaged over the noisy "
           "copies. Smoother weights than Score-CAM, at many times its cost (35 passes per channel by default).",
           options=("samples", "noise", "seed", *_PERTURBATION), stochastic=True),
    Method("is_cam", ISCAM, "IS-CAM", "Naidu, Wang et al., arXiv", 2020, "perturbation", True, True,
           "Score-CAM with each channel's mask applied at growing strengths and the class probabilities "
           "averaged, as integrated gradients does along a path. Channels that matter only while the picture is "
           "faint count too; 10 passes per channel by default.",
           options=("samples", *_PERTURBATION)),
    Method("saliency", Saliency, "Saliency (gradient)", "Simonyan et al., ICLR workshop", 2014, "input gradient",
           True, False,
           "The plain gradient of the score with respect to each pixel, the strongest colour channel shown. "
           "Pixel-sharp but noisy, and it answers 'what would change the score', not 'what is the object'."),
    Method("guided_backprop", GuidedBackprop, "Guided Backprop", "Springenberg et al., ICLR workshop", 2015,
           "input gradient", True, False,
           "The gradient with every ReLU passing back only positive signals where its input was positive: "
           "crisp edges, but nearly the same picture for every class.",
           picture=True),
    Method("deconvnet", Deconvnet, "Deconvnet", "Zeiler and Fergus, ECCV", 2014, "input gradient", True, False,
           "Passes the positive part of the signal back through each ReLU whatever its input was: shows the "
           "patterns the units respond to, even less class-specific than guided backprop. Without max pooling "
           "(EfficientNet) it is the same picture for every image.",
           picture=True),
    Method("guided_grad_cam", GuidedGradCAM, "Guided Grad-CAM", "Selvaraju et al., ICCV", 2017, "input gradient",
           True, True,
           "Guided backprop times the upsampled Grad-CAM: the edges of guided backprop, kept only where "
           "Grad-CAM says the class is. Sharp and class-discriminative.",
           options=("counterfactual",),
           picture=True),
    Method("input_x_gradient", InputXGradient, "Input × Gradient", "Shrikumar et al., arXiv", 2016,
           "input gradient", True, False,
           "The gradient times the pixel's own value: what each pixel adds to the score, to first order. "
           "Less speckled than the plain gradient where the picture is flat, but a pixel at the mean colour always "
           "counts 0."),
    Method("integrated_gradients", IntegratedGradients, "Integrated Gradients", "Sundararajan et al., ICML", 2017,
           "path gradient", True, False,
           "Averages the gradient along the straight path from a baseline picture (black, or the image blurred) to "
           "the image, times the difference, so the map adds up to how far the score rose from the baseline. "
           "A pixel whose gradient is flat at the image (saturated) still gets its share.",
           options=("steps", "baseline", "rule", "batch_size", "progress")),
    Method("smooth_grad", SmoothGrad, "SmoothGrad", "Smilkov et al., ICML workshop", 2017, "path gradient", True,
           False,
           "Averages a pixel-space map (the plain gradient unless another is chosen) over noisy copies of the "
           "image: the gradient's speckle averages out and the object's outline stays. SmoothGrad² averages the "
           "squared maps, VarGrad shows how much they vary.",
           options=("method", "samples", "noise", "variant", "seed", "method_options", "batch_size", "progress"),
           stochastic=True),
    Method("gradient_shap", GradientShap, "GradientShap", "Lundberg and Lee, NeurIPS", 2017, "path gradient", True,
           False,
           "Integrated Gradients by sampling: random baselines (black, blurred), random points on the path, "
           "averaged, which estimates each pixel's SHAP value, its fair share of the score's rise over the "
           "baselines. One gradient per sample, so noisy unless there are many.",
           options=("samples", "baselines", "noise", "seed", "batch_size", "progress"), stochastic=True),
    Method("lrp", LRP, "LRP", "Bach et al., PLOS ONE", 2015, "relevance", True, False,
           "Passes the class score back layer by layer, each layer sharing what it received among its inputs in "
           "proportion to their contributions, so the picture's relevance adds up to (nearly) the score. The rule "
           "decides how it is shared: epsilon, alpha-beta (positive evidence counted twice, negative once) or "
           "zennit's epsilon-plus-flat.",
           options=("rule", "epsilon")),
    Method("deep_lift", DeepLift, "DeepLIFT", "Shrikumar et al., ICML", 2017, "relevance", True, False,
           "Explains how far the score moved from a baseline picture (black, or the image blurred): each ReLU "
           "passes back the ratio of its output's change to its input's instead of its slope, so the pixels' "
           "shares add up exactly to that change. Unlike the gradient, a unit that switched on between the two "
           "pictures counts.",
           options=("baseline",)),
    Method("occlusion", Occlusion, "Occlusion", "Zeiler and Fergus, ECCV", 2014, "perturbation", True, False,
           "Slides a grey square over the image and records how far the score falls. A direct measure of "
           "what the score depends on, at the price of one forward pass per position.",
           options=("window", "stride", "baseline", *_PERTURBATION)),
    Method("rise", RISE, "RISE", "Petsiuk et al., BMVC", 2018, "perturbation", True, False,
           "Runs the picture through the model under many random smooth masks and averages the masks, each "
           "weighed by the class probability it left. No gradient and no layer, only the output: hundreds of "
           "forward passes, and a grainy map unless there are many masks.",
           options=("masks", "grid", "p", "seed", *_PERTURBATION), stochastic=True),
    Method("lime", LIME, "LIME", "Ribeiro et al., KDD", 2016, "perturbation", True, False,
           "Greys out random sets of superpixels and fits a weighted linear model of the score to which ones "
           "were kept; each superpixel's coefficient is its weight. A simple local stand-in for the network: the "
           "map follows the superpixels' outlines and moves a little with the seed.",
           options=("segments", "samples", "seed", *_PERTURBATION), stochastic=True),
    Method("kernel_shap", KernelSHAP, "Kernel SHAP", "Lundberg and Lee, NeurIPS", 2017, "perturbation", True,
           False,
           "LIME with the weighting that makes each superpixel's weight its Shapley value: its fair share of the "
           "score's fall from the picture to a grey one, the shares adding up to that fall. Exact when every "
           "combination of a few superpixels fits in the budget, sampled otherwise.",
           options=("segments", "samples", "seed", *_PERTURBATION), stochastic=True),
    Method("extremal_perturbation", ExtremalPerturbation, "Extremal Perturbation", "Fong et al., ICCV", 2019,
           "perturbation", True, False,
           "Searches for the smooth mask of a given area that keeps the class score highest when the rest is "
           "blurred: not a score per pixel, but the region that suffices. Found step by step (a forward and a "
           "backward pass each, a hundred by default), so slow, and the answer depends on the area asked for.",
           options=("area", "steps", "learning_rate", *_PERTURBATION)),
    Method("attention_rollout", AttentionRollout, "Attention rollout", "Abnar and Zuidema, ACL", 2020,
           "attention", False, False,
           "Follows the attention from the class token down through every block, each block's heads averaged and "
           "its skip connection counted, to the patches it finally draws on. No gradient and no class: it shows "
           "where the network looks, on the patch grid, the same map for every class.",
           options=("head_fusion", "discard_ratio")),
    Method("transformer_attribution", TransformerAttribution, "Transformer attribution", "Chefer, Gur and Wolf, ICCV",
           2021, "attention", True, False,
           "Attention rollout in which each attention weight counts by how much it raises the class score "
           "(attention times its gradient, the negative part cut). Class-specific where the plain rollout is not, "
           "from one forward and one backward pass.",),
    Method("legrad", LeGrad, "LeGrad", "Bousselham et al., arXiv", 2024, "attention", True, False,
           "Reads each block out as if it were the last and takes the positive gradient of that block's class "
           "score at its own attention maps, averaged over heads and blocks. The patches that each stage of the "
           "transformer leans on for this class, without multiplying attentions together.",
           options=("blocks",)),
]}

def methods_for(model: nn.Module) -> dict[str, Method]:
    """The entries of :data:`METHODS` that explain ``model``'s family (:func:`~gradcam_core.tokens.family`),
    in the registry's order: what the pages and ``"all"`` offer for it.

    Example:
        >>> "attention_rollout" in methods_for(vit), "cam" in methods_for(vit)
        (True, False)
    """
    network = family(model)
    return {name: m for name, m in METHODS.items() if network in m.families}

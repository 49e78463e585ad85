"""CNN or transformer: a convolutional network and a Vision Transformer explained on the same pictures.

A CNN's map is built from local evidence, stage by stage; a ViT's blocks can attend to any patch from the
first block on. The shapes lab's CNN and its ViT on one shapes picture (Grad-CAM at every stage, CAM, and the
attention methods), both measured on 500 held-out pictures, then EfficientNet-Lite0 against an ImageNet ViT.
"""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

import gradcam_core as gc
from gradcam_core import metrics, shapes
from ui import figures, layout, links, resources, shapes_view, widgets
from ui.source import show_code

CNN, VIT = "shapes_gap", "shapes_vit"
#: The attention methods: a ViT's only (their map is ``maps["input"]``, on the patch grid).
ATTENTION = tuple(name for name, method in gc.METHODS.items() if method.kind == "attention")
#: The rows of the measured table, in this order where a table has them.
MEASURED = ("grad_cam", "grad_cam_plus_plus", "layer_cam", "hires_cam", "eigen_cam", "score_cam", "saliency",
            "guided_backprop", "input_x_gradient", "smooth_grad", "integrated_gradients", "occlusion", "rise", "cam",
            *ATTENTION)
#: ImageNet ViTs, smallest first: the page takes the first whose weights are in the cache.
IMAGENET_VITS = ("deit_tiny_patch16_224", "vit_tiny_patch16_224", "deit_small_patch16_224", "vit_small_patch16_224",
                 "vit_base_patch16_224")
IMAGENET_CNN = "efficientnet_lite0"
TILE = 128  # the side of a small overlay of a 64x64 shapes picture
GAP = 6  # pixels between the overlays of a strip
SLOTS = 4  # overlays a strip has room for: every strip at one scale, four across even on a phone
MAX_SEED = 999_999


def stage_name(clf: gc.Classifier, stage: str) -> str:
    """``layer2`` for a CNN; ``block 2`` for a ViT's ``blocks.1.norm1``."""
    return f"block {int(stage.split('.')[1]) + 1}" if stage.startswith("blocks.") else stage


def next_seed() -> None:
    st.session_state["vit_seed"] = (int(st.session_state.get("vit_seed", 0)) + 1) % (MAX_SEED + 1)


def picture_ui(selection: widgets.Selection) -> tuple[int, shapes.ShapesBatch]:
    """The seed (in the URL) and its shapes picture, with the true box."""
    default = int(st.session_state.get("shapes_seed", 0)) if selection.model.startswith("shapes") else 0
    key = links.linked("vit_seed", default, parse=int, label="the shapes picture",
                       valid=lambda seed: isinstance(seed, int) and 0 <= seed <= MAX_SEED)
    left, right = st.columns([1, 2])
    with left:
        seed = int(st.number_input("Shapes picture", 0, MAX_SEED, key=key, help="Each number draws another picture."))
        st.button("New picture", key="vit_new", on_click=next_seed, icon=":material/refresh:")
    batch = resources.shapes_sample(seed)
    truth = shapes.CLASSES[int(batch.labels[0])]
    with right:
        st.image(figures.compact(shapes_view.overlay_with_regions(batch.pictures[0], None, "jet", 0.0,
                                                                  [(batch.masks[0], shapes_view.TRUTH_COLOUR)])),
                 width=160, caption=f"Picture #{seed}: a {truth} (green box). Both networks explain '{truth}'.")
    return seed, batch


def load_vit(name: str) -> gc.Classifier | None:
    """The shared classifier, or ``None`` and a sentence when its weights are not there."""
    try:
        return resources.classifier(name)
    except gc.WeightsUnavailableError as error:
        st.info(f"**The Vision Transformer's trained weights are not here yet.** {error}")
        return None


def strip(pictures: list[np.ndarray]) -> np.ndarray:
    """The pictures side by side in :data:`SLOTS` places, the empty ones transparent (RGBA)."""
    out = np.zeros((TILE, SLOTS * TILE + (SLOTS - 1) * GAP, 4), np.uint8)
    for i, picture in enumerate(pictures):
        out[:, i * (TILE + GAP):i * (TILE + GAP) + TILE] = np.dstack([picture, np.full((TILE, TILE), 255, np.uint8)])
    return out


def strip_ui(pictures: list[tuple[str, np.ndarray]], filename: str) -> None:
    """Small overlays in one row, one picture that scales with the screen (a phone keeps the four in a row)."""
    st.image(figures.png(strip([p for _, p in pictures])), caption=" · ".join(c for c, _ in pictures),
             width="stretch")
    figures.download(lambda: figures.grid_png(pictures, len(pictures)), filename, "Download these pictures (PNG)")


def network_ui(network: str, clf: gc.Classifier, seed: int, batch: shapes.ShapesBatch,
               selection: widgets.Selection) -> None:
    """One network on the picture: its answer, Grad-CAM at every stage, then its own methods."""
    target, mask, picture = int(batch.labels[0]), batch.masks[0], batch.pictures[0]
    image_id = f"shapes-{seed}"
    probabilities = resources.probabilities(network, image_id, clf, batch.images)
    said = int(probabilities.argmax())
    own = ("cam",) if network == CNN else ATTENTION
    options = {"cam": {"fc": clf.fc}} if network == CNN else None
    results = resources.explanation(("grad_cam", *own), network, image_id, tuple(clf.stages), target, options,
                                    clf, batch.images)
    verdict = "right" if said == target else f"wrong: the truth is '{shapes.CLASSES[target]}'"
    st.markdown(f"**{resources.MODEL_LABELS[network]}** says **'{shapes.CLASSES[said]}'** "
                f"({float(probabilities[said]):.0%}, {verdict}).")

    def tile(m: torch.Tensor, title: str) -> tuple[str, np.ndarray]:
        hit = "hit" if metrics.pointing_game(m, mask) else "miss"
        return f"{title}: {hit}", gc.overlay(shapes_view.enlarged(picture, TILE), m, selection.cmap,
                                                   selection.alpha)

    grad_cam = results["grad_cam"]
    st.caption(f"Grad-CAM at every {'stage' if network == CNN else 'block'}, early to late (hit: the map's peak "
               "is on the shape):")
    strip_ui([tile(grad_cam.maps[s][0], stage_name(clf, s)) for s in clf.stages], f"grad_cam_stages_{network}_{seed}.png")
    if network == CNN:
        st.caption(f"CAM: the head's weights on {clf.cam_layer}'s maps.")
    else:
        st.caption("The attention methods, on the 8x8 patch grid: rollout is the same for every class; transformer "
                   "attribution and LeGrad follow the class.")
    tiles = [tile(results[name].maps[clf.cam_layer if name == "cam" else "input"][0], gc.METHODS[name].label)
             for name in own]
    strip_ui(tiles, f"own_methods_{network}_{seed}.png")


def shapes_ui(selection: widgets.Selection) -> None:
    seed, batch = picture_ui(selection)
    cnn_column, vit_column = st.columns(2, gap="medium")
    with cnn_column:
        network_ui(CNN, resources.classifier(CNN), seed, batch, selection)
    with vit_column:
        vit = load_vit(VIT)
        if vit is not None:
            network_ui(VIT, vit, seed, batch, selection)
    st.caption("Hit or miss is the pointing game on this picture: is the map's strongest cell inside the shape? "
               "The next section counts the hits on 500 pictures.")


def measured_ui() -> None:
    """The pointing game and box IoU of both networks, from the shipped tables."""
    shipped = {}  # network -> (what the file says, method -> its row)
    for network in (CNN, VIT):
        table = gc.evaluation.load_scores(network)
        if table is not None:
            shipped[network] = (table[0], {row.method: row for row in table[1]})
    if VIT not in shipped:
        st.info(f"The Vision Transformer's table is not shipped yet (`assets/precomputed/evaluation_{VIT}.json`). "
                f"`python -m gradcam_core evaluate --model {VIT} --json assets/precomputed/evaluation_{VIT}.json` "
                "writes it; until then, the CNN's numbers alone.")
    if not shipped:
        return
    methods = [m for m in MEASURED if any(m in rows and not rows[m].refusal for _, rows in shipped.values())]
    short = {CNN: "CNN", VIT: "ViT"}

    def score(network: str, method: str, field: str) -> float | None:
        row = shipped[network][1].get(method)
        value = None if row is None or row.refusal else getattr(row, field)
        return None if value is None else 100 * value

    columns = {f"{label} · {short[n]}": ["—" if v is None else f"{v:.0f}%" for v in
                                          (score(n, m, field) for m in methods)]
               for field, label in (("pointing_game", "pointing game"), ("box_iou", "box IoU > 0.5"))
               for n in shipped}
    st.dataframe({"method": [gc.METHODS[m].label for m in methods], **columns}, hide_index=True, width="stretch",
                 height=35 * (len(methods) + 1) + 3)  # every row, no scrolling
    figure = go.Figure([
        go.Bar(y=[gc.METHODS[m].label for m in methods], x=[score(n, m, "pointing_game") for m in methods],
               orientation="h", name=resources.MODEL_LABELS[n], hovertemplate="%{y}: %{x:.0f}%<extra></extra>")
        for n in shipped
    ])
    figure.update_layout(title="Pointing game: the map's peak on the shape", barmode="group",
                         height=100 + 16 * len(methods) * len(shipped), xaxis={"range": [0, 100], "ticksuffix": "%"},
                         yaxis={"autorange": "reversed"}, legend={"orientation": "h", "y": -0.12}, **figures.COMPACT)
    st.plotly_chart(figure, key="vit_pointing")
    sources = "; ".join(f"{short[n]}: `python -m gradcam_core evaluate --model {n} --json "
                        f"assets/precomputed/evaluation_{n}.json`, layer methods at {meta['layer']}"
                        for n, (meta, _) in shipped.items())
    description = next(iter(shipped.values()))[0]["description"]
    st.caption(f"Shipped with the app, measured on {description}. {sources}. A dash: the method does not "
               "explain that family of network (CAM needs a CNN's pooled head, the attention methods a ViT).")
    st.info("**One more thing to doubt.** Trained again from another seed (`python -m gradcam_core.shapes train "
            "--networks shapes_vit --seed 1`), the ViT was just as accurate (97.3% on the same 1000 pictures), "
            "yet its Grad-CAM at the last block found the shape in 66% of them instead of 23%; attention rollout "
            "stayed high (88% and 94%). Two transformers that answer alike can be explained very differently.")


def imagenet_picture(selection: widgets.Selection) -> tuple[str, np.ndarray, object]:
    """(cache key, picture shown, what the models read): the sidebar's photo, or the default sample."""
    if not selection.model.startswith("shapes"):
        return selection.picture.image_id, selection.rgb, selection.picture.model_input
    data = (widgets.ASSETS / widgets.SAMPLES[widgets.DEFAULT_SAMPLE][0]).read_bytes()
    image_id = resources.digest(data)
    image = resources.display_image(image_id, data, widgets.DISPLAY_SIDE)
    st.caption(f"The sidebar shows a shapes picture, so this part uses the photo '{widgets.DEFAULT_SAMPLE}'.")
    return image_id, np.asarray(image), image


def imagenet_ui(selection: widgets.Selection) -> None:
    arch = next((a for a in IMAGENET_VITS if gc.models.cached_pretrained(f"timm:{a}")), None)
    if arch is None:
        st.info(
            f"No ImageNet Vision Transformer's weights are in this computer's cache (looked for "
            f"{', '.join(IMAGENET_VITS)}); the app never downloads them. Run once, on a machine with a network: "
            "`python -c \"import timm; timm.create_model('deit_tiny_patch16_224', pretrained=True)\"`, "
            "then reload this page."
        )
        return
    name = f"timm:{arch}"
    image_id, rgb, model_input = imagenet_picture(selection)
    cnn, vit = resources.classifier(IMAGENET_CNN), resources.classifier(name)
    x_cnn, x_vit = cnn.preprocess(model_input), vit.preprocess(model_input)
    p_cnn = resources.probabilities(IMAGENET_CNN, image_id, cnn, x_cnn)
    p_vit = resources.probabilities(name, image_id, vit, x_vit)
    target = selection.target if selection.model in resources.IMAGENET_MODELS else int(p_cnn.argmax())
    cnn_map = resources.explanation(("grad_cam",), IMAGENET_CNN, image_id, (cnn.cam_layer,), target, None, cnn,
                                    x_cnn)["grad_cam"].maps[cnn.cam_layer][0]
    vit_results = resources.explanation(("grad_cam", "attention_rollout"), name, image_id, (vit.cam_layer,), target,
                                        None, vit, x_vit)
    st.markdown(f"Class **'{cnn.categories[target]}'**: EfficientNet-Lite0 gives it {float(p_cnn[target]):.0%}, "
                f"{arch} {float(p_vit[target]):.0%}.")
    pictures = [
        (f"EfficientNet-Lite0: Grad-CAM at {cnn.cam_layer}", cnn_map),
        (f"{arch}: Grad-CAM at {vit.cam_layer}", vit_results["grad_cam"].maps[vit.cam_layer][0]),
        (f"{arch}: attention rollout (every class)", vit_results["attention_rollout"].maps["input"][0]),
    ]
    figures.show_grid([(title, gc.overlay(rgb, m, selection.cmap, selection.alpha)) for title, m in pictures],
                      columns=3, filename=f"cnn_vs_{arch}_{target}.png")
    st.caption(f"{vit.description}.")


selection = widgets.sidebar()
st.title("CNN or transformer: where do they look?")
layout.lesson(
    "A **CNN** builds its map from local evidence: each stage's cells see a little more of the picture, so its "
    "early maps follow edges and only the late ones find the object. A **Vision Transformer** cuts the picture "
    "into patches (the shapes ViT through a small convolutional stem, which helps it learn from few pictures), "
    "and every block lets each patch attend to **any other**, from the first block on. "
    "**Look for** how early each network's Grad-CAM finds the shape. Three maps only a transformer has: "
    "**attention rollout** multiplies the attention of all blocks to show where the class token draws from "
    "(the same map whatever the class), while **transformer attribution** and **LeGrad** weigh the attention "
    "with gradients, so they are class-specific, as Grad-CAM on the tokens is."
)
st.header("The same picture, two networks")
shapes_ui(selection)
st.header("Measured on 500 held-out pictures")
measured_ui()
st.header("On a photo: EfficientNet-Lite0 against an ImageNet ViT")
imagenet_ui(selection)

show_code(
    "cnn, vit = gc.load_model('shapes_gap'), gc.load_model('shapes_vit')\n"
    "batch = shapes.render(1, seed); x, target = batch.images, int(batch.labels[0])\n"
    "gc.explain(cnn.module, x, target, layers=cnn.stages, methods=['grad_cam', 'cam'],\n"
    "           options={'cam': {'fc': cnn.fc}})\n"
    "gc.explain(vit.module, x, target, layers=vit.stages,          # blocks.i.norm1: tokens as an 8x8 grid\n"
    "           methods=['grad_cam', 'attention_rollout', 'transformer_attribution', 'legrad'])\n"
    "gc.methods_for(vit.module)                                   # what explains a ViT\n"
    "gc.models.cached_pretrained('timm:deit_tiny_patch16_224')     # ImageNet ViT weights cached? never downloads",
    gc.AttentionRollout,
)

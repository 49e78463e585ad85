"""Method gallery: every registered explainer on one image, stage by stage, side by side."""

import numpy as np
import streamlit as st
from PIL import Image
from skimage.segmentation import mark_boundaries

import gradcam_core as gc
from ui import figures, layout, links, widgets
from ui.source import show_code

CELL_SIDE = 256
DEFAULT_METHODS = ["cam", "grad_cam", "grad_cam_plus_plus", "layer_cam", "eigen_cam", "saliency", "guided_backprop"]
#: The gallery's filter: what a method must be to be offered.
FILTERS = {
    "fast": lambda method: not method.slow,
    "class-specific": lambda method: method.class_specific,
    "deterministic": lambda method: not method.stochastic,
    "at a layer": lambda method: method.layered,
    "at the pixels": lambda method: not method.layered,
}


def heading(kind: str) -> str:
    return kind[0].upper() + kind[1:]


def row_columns(stages: list[str]) -> list:
    """The method's column, then one per stage; at least four, so that one stage is not drawn huge."""
    return st.columns([1.4] + [1] * max(len(stages), 4))


def methods_ui(methods: dict[str, gc.Method]) -> list[str]:
    """The methods to compare, one row of toggles per kind, in the registry's order, narrowed by a filter
    (``methods``: those that explain the network, ``gc.methods_for``)."""
    only = st.segmented_control("Offer only the methods that are", list(FILTERS), selection_mode="multi",
                                key=links.linked("gallery_only", [], parse=links.names,
                                                 valid=lambda chosen: set(chosen) <= set(FILTERS), label="the filter"))
    offered = [name for name, method in methods.items() if all(FILTERS[f](method) for f in only)]
    chosen = []
    for kind in gc.KINDS:
        names = [name for name, method in gc.METHODS.items() if method.kind == kind]
        key = links.linked(f"methods_{kind.replace(' ', '_')}", [n for n in names if n in DEFAULT_METHODS],
                           parse=links.names, valid=lambda chosen, names=names: set(chosen) <= set(names),
                           label=f"the {kind} methods")
        shown = [name for name in names if name in offered]
        if not shown:
            continue
        # the filter hides a method: it is no longer chosen either
        st.session_state[key] = [name for name in st.session_state[key] if name in shown]
        chosen += st.pills(heading(kind), shown, selection_mode="multi", format_func=lambda n: gc.METHODS[n].label,
                           key=key, help=gc.KINDS[kind])
    return [name for name in gc.METHODS if name in chosen]


def settings_ui(clf: gc.Classifier) -> tuple[list[str], dict[str, dict]]:
    stages = st.segmented_control("Stages (columns)", clf.stages, selection_mode="multi", key=links.linked(
        "gallery_stages", list(clf.stages), parse=links.names, valid=lambda chosen: set(chosen) <= set(clf.stages),
        label="the stages")) or clf.stages[-1:]
    with st.expander("Settings of the slow and the random methods"):
        left, middle, right = st.columns(3)
        batch = left.select_slider("Batch size", [8, 16, 32, 64, 128],
                                   key=links.linked("gallery_batch", 32, [8, 16, 32, 64, 128], int),
                                   help="Forward passes per batch: larger is faster, up to the memory.")
        side = min(clf.input_size)
        window = middle.slider("Occlusion window (pixels)", 4, side // 2, key=links.linked(
            "gallery_window", max(4, side // 7), range(4, side // 2 + 1), int))
        stride = right.slider("Occlusion stride (pixels)", 2, side // 2, key=links.linked(
            "gallery_stride", max(2, side // 14), range(2, side // 2 + 1), int))
        seed = left.number_input("Seed of the random methods", 0, 9999, key=links.linked("gallery_seed", 0, range(10000), int),
                                 help="The methods that draw random masks or noise give the same map for the same seed; "
                                      "try another to see how much of the map is chance.")
    options = {name: {**({"batch_size": batch} if "batch_size" in method.options else {}),
                      **({"seed": seed} if "seed" in method.options else {})}
               for name, method in gc.METHODS.items() if {"batch_size", "seed"} & set(method.options)}
    options["occlusion"].update(window=window, stride=stride)
    return [s for s in clf.stages if s in stages], options


def slow_results_ui(selection: widgets.Selection, slow: list[str], stages: list[str],
                    options: dict[str, dict]) -> dict[str, gc.Result]:
    """The slow methods, each through the server's queue on its own: its place in the line, its progress
    and a Cancel button while it runs (see ``resources.queued``)."""
    results = {}
    for method in slow:
        results.update(selection.explain([method], stages, options={method: options[method]}))
    return results


def cam_result(selection: widgets.Selection) -> gc.Result | str:
    try:
        return selection.explain(["cam"], [selection.clf.cam_layer])["cam"]
    except ValueError as refusal:
        return str(refusal)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    image = Image.fromarray(rgb)
    image.thumbnail((CELL_SIDE, CELL_SIDE), Image.LANCZOS)
    return np.asarray(image)


def cells(name: str, result: gc.Result | str, stages: list[str], base: np.ndarray,
          selection: widgets.Selection) -> list[tuple[str, np.ndarray | str]]:
    """(caption, picture or a sentence) for each stage column of one method."""
    method = gc.METHODS[name]
    if isinstance(result, str):
        return [("", f"CAM refuses this network: {result}")] + [("", "")] * (len(stages) - 1)
    if not method.layered:
        m = result.maps["input"][0]
        caption = "pixel space: one picture for the whole network"
        if figures.signed(name, m):
            caption += f"; {figures.SIGNED_CAPTION}"
        picture = figures.method_picture(name, m, base, selection.cmap, selection.alpha)
        return [(caption, picture)] + [("", "")] * (len(stages) - 1)
    out = []
    for stage in stages:
        if stage not in result.maps:
            out.append(("", f"CAM explains only {selection.clf.cam_layer}, the layer before the pooling."))
        elif name == "guided_grad_cam":
            picture = figures.method_picture(name, result.maps[stage][0], base, selection.cmap, selection.alpha)
            out.append((stage, picture))
        else:
            m = result.maps[stage][0]
            out.append((f"{stage} · {m.shape[0]}x{m.shape[1]}", gc.overlay(base, m, selection.cmap, selection.alpha)))
    return out


def timing(result: gc.Result | str) -> str:
    if isinstance(result, str):
        return ""
    own = f"{result.seconds * 1000:.0f} ms own step"
    return f"{own} + {result.pass_seconds * 1000:.0f} ms shared pass" if result.pass_seconds else own


def gallery_ui(results: dict[str, gc.Result | str], stages: list[str], selection: widgets.Selection) -> list:
    base = thumbnail(selection.rgb)
    header = row_columns(stages)
    header[0].markdown("**method**")
    for column, stage in zip(header[1:], stages):
        column.markdown(f"**{stage}**")
    pictures = []
    for kind in gc.KINDS:
        names = [n for n in results if gc.METHODS[n].kind == kind]
        if names:
            st.markdown(f"##### {heading(kind)}: {gc.KINDS[kind]}")
        for name in names:
            method = gc.METHODS[name]
            row = row_columns(stages)
            row[0].markdown(f"**{method.label}** ({method.paper} {method.year})  \n{method.summary}")
            row[0].caption(timing(results[name]))
            for column, (caption, picture) in zip(row[1:], cells(name, results[name], stages, base, selection)):
                if isinstance(picture, np.ndarray):
                    column.image(figures.compact(picture), caption=caption, width="stretch")
                    pictures.append((f"{method.label} {caption.split(' ')[0]}", picture))
                elif picture:
                    column.caption(picture)
    return pictures


def superpixels_ui(selection: widgets.Selection, base: np.ndarray) -> None:
    """The superpixels LIME and Kernel SHAP switch on and off: SLIC's, as the two methods use them."""
    segments = gc.superpixels(selection.x)[0].numpy()
    shown = np.asarray(Image.fromarray(segments.astype(np.int32)).resize(base.shape[1::-1], Image.NEAREST))
    outlined = (mark_boundaries(base, shown, color=(1, 1, 0)) * 255).round().astype(np.uint8)
    left, right = st.columns([1, 2])
    left.image(figures.compact(outlined), width="stretch", caption=f"{int(segments.max()) + 1} superpixels (SLIC)")
    right.markdown("LIME and Kernel SHAP do not look at pixels but at these superpixels: each perturbed copy keeps "
                   "some of them and sets the others to the mean colour, and a linear model fitted to the scores says "
                   "what each one adds. A map of theirs is one value per superpixel, so it follows these outlines.")


def eigen_lesson_ui(selection: widgets.Selection) -> None:
    """Eigen-CAM and Grad-CAM for two classes: one map moves with the class, the other cannot."""
    layer, other = selection.clf.cam_layer, widgets.second_class_ui(selection, key="gallery_other")
    base = thumbnail(selection.rgb)
    pictures, maps = [], {}
    for target in (selection.target, other):
        results = selection.explain(["eigen_cam", "grad_cam"], [layer], target=target)
        maps[target] = {name: r.maps[layer][0] for name, r in results.items()}
        for name in ("eigen_cam", "grad_cam"):
            caption = f"{gc.METHODS[name].label}: '{selection.clf.categories[target]}'"
            pictures.append((caption, gc.overlay(base, maps[target][name], selection.cmap, selection.alpha)))
    figures.show_grid(pictures, columns=4, filename=f"eigen_cam_two_classes_{selection.target}_{other}.png")
    same = float((maps[selection.target]["eigen_cam"] - maps[other]["eigen_cam"]).abs().max())
    r = gc.maps.correlation(maps[selection.target]["grad_cam"], maps[other]["grad_cam"])
    st.info(f"Eigen-CAM's two maps differ by at most {same:.1e}: it never looks at the class. Grad-CAM's two maps "
            f"correlate at r = {r:.2f}. Eigen-CAM shows what {layer} sees most, which is often, not always, the "
            "object the network names.")


selection = widgets.sidebar()
clf = selection.clf
methods = gc.methods_for(clf.module)
st.title("Method gallery: every explainer, side by side")
layout.lesson(
    f"{len(methods)} answers to one question: where does the network see **{selection.class_name}**? Each row is a "
    "method, each column a stage of the network. Methods of one kind read the same thing from the network "
    "(the heading says what); the text beside each says what it changes. The gradient methods share one "
    "forward and one backward pass; the perturbation methods run extra forward passes, batched, with a "
    "progress bar, and are cached like everything else."
)
chosen = methods_ui(methods)
stages, options = settings_ui(clf)
if not chosen:
    st.info("Pick at least one method above.")
    st.stop()
fast = [m for m in chosen if not gc.METHODS[m].slow and m != "cam"]
results: dict[str, gc.Result | str] = {}
if "cam" in chosen:
    results["cam"] = cam_result(selection)
if fast:
    results.update(selection.explain(fast, stages, options={m: options[m] for m in fast if m in options} or None))
slow = [m for m in chosen if gc.METHODS[m].slow]
if slow:
    results.update(slow_results_ui(selection, slow, stages, options))
results = {name: results[name] for name in chosen if name in results}
pictures = gallery_ui(results, stages, selection)
if pictures:
    figures.download(lambda: figures.grid_png(pictures, columns=len(stages)), f"gallery_{selection.target}.png",
                     "Download the gallery (PNG)")

if {"lime", "kernel_shap"} & set(chosen):
    st.subheader("The superpixels of LIME and Kernel SHAP")
    superpixels_ui(selection, thumbnail(selection.rgb))

if "eigen_cam" in chosen:
    st.subheader("Eigen-CAM has no class")
    eigen_lesson_ui(selection)

show_code(
    f"results = gc.explain(clf.module, x, target={selection.target}, layers={stages},\n"
    f"                     methods={fast}){'  # one forward, one backward pass' if fast else ''}\n"
    + "".join(f"gc.explain(clf.module, x, {selection.target}, {stages}, ['{m}'], options={{'{m}': {options[m]}}},\n"
              "           progress=lambda done, total: ...)\n" for m in slow)
    + "results['grad_cam'].maps['layer4']   # (1, h, w) at the layer's resolution; overlay() upsamples",
    gc.explain,
    gc.explainers.base.run,
)

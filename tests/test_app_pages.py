"""The dashboard's pages under Streamlit's AppTest: they render, react, and survive bad uploads."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradcam_core as gc

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["home", "activations", "cam", "grad_cam", "guided", "compare", "shapes_lab", "gallery", "trust",
         "bias", "adversarial", "failures", "weak_strong", "units", "depth", "quiz", "where", "class_results",
         "spot_difference", "cnn_vs_vit"]
TIGER_CAT, EGYPTIAN_CAT = 282, 285


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    return at


def problems(at: AppTest) -> list[str]:
    return [e.value for e in at.exception]


def class_box(at: AppTest):
    return next(box for box in at.sidebar.selectbox if box.label == "Class to explain")


def page_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.info, *at.success, *at.warning, *at.error, *at.subheader)]
    return "\n".join(str(p) for p in parts)


def image_ids(at: AppTest) -> list[str]:
    return [str(image.proto) for image in at.get("image")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_an_exception(page):
    at = open_page(page)
    assert not problems(at)
    assert not at.error, [e.value for e in at.error]
    if page != "home":
        assert at.get("image") or at.get("plotly_chart"), f"{page} shows no figure"


def test_changing_the_class_redraws_the_layer_grid():
    at = open_page("grad_cam")
    before_text, before_images = page_text(at), image_ids(at)
    class_box(at).set_value(TIGER_CAT).run()
    assert not problems(at)
    assert "'tiger cat'" in page_text(at) and "'tiger cat'" not in before_text
    assert image_ids(at) != before_images


def test_changing_the_layer_changes_the_feature_maps():
    at = open_page("activations")
    assert "of layer1" in page_text(at)
    at.button_group(key="activations_layer").set_value("layer3").run()
    assert not problems(at)
    assert "of layer3" in page_text(at) and "of layer1" not in page_text(at)


def test_changing_the_image_changes_the_prediction_and_the_maps():
    at = open_page("grad_cam")
    before = image_ids(at)
    at.selectbox(key="widget:sample").set_value("Chelsea the cat").run()
    assert not problems(at)
    assert class_box(at).value == EGYPTIAN_CAT
    assert image_ids(at) != before


def test_every_page_follows_the_sidebar_choice():
    at = open_page("grad_cam")
    at.selectbox(key="widget:sample").set_value("Espresso").run()
    at.switch_page("pages/compare.py").run()
    assert at.selectbox(key="widget:sample").value == "Espresso"
    assert "espresso" in class_box(at).format_func(class_box(at).value)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _photo() -> Image.Image:
    return Image.open(Path(APP).parent / "assets" / "images" / "chelsea.png").convert("RGB")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return _encoded(_photo(), "JPEG", exif=exif.tobytes())


def _transparent() -> bytes:
    rgba = _photo().convert("RGBA")
    rgba.putalpha(128)
    return _encoded(rgba, "PNG")


REFUSED = {
    "not_an_image.png": (b"this is a text file, not a picture\n" * 20, "not an image"),
    "truncated.jpg": (_encoded(_photo(), "JPEG")[:3000], "truncated"),
    "empty.png": (b"", "empty"),
    "bomb.png": (_png_claiming(100_000, 100_000), "too large"),
    "tiny.png": (_encoded(Image.new("RGB", (20, 20), "red"), "PNG"), "at least 32 pixels"),
}
ACCEPTED = {
    "sixteen_bit.png": lambda: _encoded(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), "PNG"),
    "cmyk.jpg": lambda: _encoded(_photo().convert("CMYK"), "JPEG"),
    "palette.gif": lambda: _encoded(_photo().convert("P"), "GIF"),
    "transparent.png": _transparent,
    "rotated.jpg": _exif_rotated,
}


def _upload(name: str, data: bytes) -> AppTest:
    at = open_page("grad_cam")
    at.radio(key="widget:image_source").set_value("Upload").run()
    at.file_uploader(key="widget:upload").set_value((name, data, "application/octet-stream")).run()
    return at


@pytest.mark.parametrize("name", REFUSED)
def test_a_bad_upload_gets_a_plain_message_and_the_page_keeps_working(name):
    data, message = REFUSED[name]
    at = _upload(name, data)
    assert not problems(at)
    errors = " ".join(e.value for e in at.error)
    assert message in errors and name in errors
    assert "Traceback" not in errors
    assert at.get("image"), "the page should fall back to a sample and still draw its maps"


@pytest.mark.parametrize("name", ACCEPTED)
def test_unusual_but_valid_uploads_are_explained(name):
    at = _upload(name, ACCEPTED[name]())
    assert not problems(at)
    assert not at.error, [e.value for e in at.error]
    assert at.get("image")


def test_two_sessions_keep_their_own_image_and_class():
    first, second = open_page("grad_cam"), open_page("grad_cam")
    first.selectbox(key="widget:sample").set_value("Chelsea the cat").run()
    second.selectbox(key="widget:sample").set_value("Espresso").run()
    class_box(second).set_value(TIGER_CAT).run()
    first.run()
    assert first.selectbox(key="widget:sample").value == "Chelsea the cat"
    assert class_box(first).value == EGYPTIAN_CAT
    assert class_box(second).value == TIGER_CAT


def test_cam_page_on_the_shapes_networks():
    at = open_page("cam")
    at.selectbox(key="widget:model").set_value("shapes_gap").run()
    assert not problems(at) and not at.error
    assert {m.label for m in at.metric} >= {"Box IoU", "Pointing game"}
    before = image_ids(at)
    at.button(key="new_shapes_image").click().run()
    assert image_ids(at) != before

    at.selectbox(key="widget:model").set_value("shapes_fc").run()
    assert not problems(at)
    refusal = " ".join(e.value for e in at.error)
    assert "CAM refuses" in refusal and "GradCAM" in refusal
    assert at.get("image"), "Grad-CAM's map should stand beside the refusal"


def test_a_short_training_run_finishes_and_becomes_a_model_choice():
    at = open_page("shapes_lab")
    at.slider(key="lab_epochs").set_value(1)
    at.select_slider(key="lab_images").set_value(500)
    at.button(key="lab_train").click().run()
    assert not problems(at)
    assert any("After 1 epochs" in s.value for s in at.success)
    assert "Shapes: GAP, trained by you" in at.selectbox(key="widget:model").options
    at.selectbox(key="widget:model").set_value("shapes_gap_trained").run()
    at.switch_page("pages/cam.py").run()
    assert not problems(at) and not at.error
    assert {m.label for m in at.metric} >= {"Box IoU", "Pointing game"}


def gallery_captions(at: AppTest) -> str:
    return " ".join(str(e.value) for e in (*at.markdown, *at.caption))


def test_the_gallery_draws_every_chosen_method_in_the_registry():
    """Every method that explains a CNN (the attention methods' row is not offered for one)."""
    at = open_page("gallery")
    at.selectbox(key="widget:model").set_value("shapes_gap").run()
    methods = [method for method in gc.METHODS.values() if "CNN" in method.families]
    for kind in gc.KINDS:
        names = [method.name for method in methods if method.kind == kind]
        if names:
            at.button_group(key=f"methods_{kind.replace(' ', '_')}").set_value(names).run()
    assert not [group for group in at.get("button_group") if group.key == "methods_attention"]
    assert not problems(at) and not at.error, [e.value for e in at.error]
    text = gallery_captions(at)
    for method in methods:
        assert f"**{method.label}**" in text, method.name
    assert "shared pass" in text  # each row says what it cost
    layered = sum(method.layered for method in methods)
    assert len(at.get("image")) >= 4 * (layered - 1) + 1 + (len(methods) - layered)  # CAM: the last stage only


def test_the_gallery_filter_offers_only_the_methods_it_names():
    at = open_page("gallery")
    at.button_group(key="gallery_only").set_value(["fast", "deterministic"]).run()
    assert not problems(at)
    by_label = {method.label: method for method in gc.METHODS.values()}
    offered = [by_label[label] for group in at.get("button_group") if group.key and group.key.startswith("methods_")
               for label in group.options]
    assert offered and len(offered) < len(gc.METHODS)
    for method in offered:
        assert not method.slow and not method.stochastic, method.name
    assert not [group for group in at.get("button_group") if group.key == "methods_perturbation"]


def test_the_gallery_runs_the_slow_methods():
    at = open_page("gallery")
    at.selectbox(key="widget:model").set_value("shapes_gap").run()
    at.button_group(key="methods_perturbation").set_value(["score_cam", "ablation_cam"]).run()
    assert not problems(at) and not at.error, [e.value for e in at.error]
    assert "**Score-CAM**" in gallery_captions(at) and "**Ablation-CAM**" in gallery_captions(at)
    before = image_ids(at)
    at.slider(key="widget:alpha").set_value(0.8).run()
    assert not problems(at) and image_ids(at) != before  # the overlays follow the opacity


def test_eigen_cam_gives_the_same_map_for_two_classes():
    at = open_page("gallery")
    assert any("differ by at most 0.0e+00" in i.value for i in at.info)


def test_the_guided_page_sets_three_pixel_methods_against_grad_cam():
    at = open_page("guided")
    assert not problems(at) and not at.error
    captions = " ".join(str(i.proto) for i in at.get("image"))
    for label in ("Saliency", "Guided Backprop", "Deconvnet", "Guided Grad-CAM", "Deconvnet × Grad-CAM"):
        assert label in captions, label


def test_the_trust_page_draws_curves_sanity_and_the_table_on_shapes():
    at = open_page("trust")
    at.selectbox(key="widget:model").set_value("shapes_gap").run()
    assert not problems(at) and not at.error, [e.value for e in at.error]
    charts = [str(c.proto) for c in at.get("plotly_chart")]
    assert any("Deletion" in c and "AUC" in c for c in charts) and any("Insertion" in c for c in charts)
    assert any("SSIM" in c for c in charts)  # the sanity check's similarity curves
    assert any("rank correlation of |map|" in i.value for i in at.info)
    table = " ".join(m.value for m in at.markdown if "| method |" in m.value)
    assert "pointing game" in table and "Score-CAM" in table  # the shipped table, with ground truth


def test_the_trust_page_reads_the_shipped_table_of_an_imagenet_model():
    at = open_page("trust")
    at.multiselect(key="trust_methods").set_value(["grad_cam"]).run()
    at.multiselect(key="sanity_methods").set_value(["grad_cam"]).run()
    assert not problems(at) and not at.error
    table = " ".join(m.value for m in at.markdown if "| method |" in m.value)
    assert "deletion AUC" in table and "pointing game" not in table  # no ground truth on the photos


def open_with_model(page: str, model: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["model"] = model
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    return at


def test_the_bias_page_shows_the_shortcut_and_a_lying_tag_changes_the_biased_answer():
    at = open_page("bias")
    assert not problems(at)
    metrics_ = {m.label: m.value for m in at.metric}
    assert float(metrics_["shapes_biased on pictures tagged like its training set"].rstrip("%")) > 90
    assert float(metrics_["…and on pictures whose tag is random"].rstrip("%")) < 40
    assert "follows a lying tag" in page_text(at)
    before = image_ids(at)
    at.radio(key="bias_tag").set_value("lies (another class's tag)").run()
    assert not problems(at) and image_ids(at) != before


def test_the_adversarial_page_flips_a_shapes_picture_and_keeps_the_budget():
    at = open_with_model("adversarial", "shapes_gap")
    at.slider(key="attack_epsilon").set_value(12).run()
    assert not problems(at)
    assert "The top-1 moved from" in page_text(at)
    labels = [m.label for m in at.metric]
    assert any(label.startswith("Correlation of the") for label in labels)
    at.toggle(key="attack_stop").set_value(False).run()
    assert not problems(at)


def test_the_failure_page_browses_the_mistakes_of_a_weak_shapes_network():
    at = open_with_model("failures", "shapes_gap_early")
    assert not problems(at) and not at.error
    assert "of 500** held-out pictures are misclassified" in page_text(at)
    slider = at.slider[0]
    before = image_ids(at)
    slider.set_value(2).run()
    assert not problems(at) and image_ids(at) != before


def test_the_failure_page_lists_the_photos_an_imagenet_model_gets_wrong():
    at = open_page("failures")
    assert not problems(at)
    assert "rocket.jpg" in at.radio[0].options and "hard/horse.png" in at.radio[0].options
    at.radio[0].set_value("hard/horse.png").run()
    assert not problems(at) and "sorrel" in str([image.proto for image in at.get("image")])


def test_an_answer_on_the_weak_or_strong_page_goes_into_the_class_tally():
    from ui.tally import Tally

    before = len(Tally().answers("weak_vs_strong"))
    at = open_page("weak_strong")
    assert not problems(at)
    assert "**Model A** was" not in page_text(at)
    next(r for r in at.radio if r.label == "Which model would you trust more?").set_value("Model A")
    next(b for b in at.button if b.label == "Answer").click().run()
    assert not problems(at)
    assert "**Model A** was" in page_text(at) and "The class so far" in page_text(at)
    assert len(Tally().answers("weak_vs_strong")) == before + 1


def test_the_cam_page_compares_average_and_max_pooling():
    at = open_with_model("cam", "shapes_gap")
    assert not problems(at)
    assert "Which pooling 'localizes better' depends on how you threshold" in page_text(at)
    assert [m.label for m in at.metric].count("Shape covered") == 2


def test_the_unit_page_synthesizes_a_class_and_shows_three_views_of_a_channel():
    at = open_with_model("units", "shapes_gap")
    assert not problems(at) and not at.error
    assert "The network calls it:" in "\n".join(c.value for c in at.caption)
    at.button_group(key="excite").set_value("a channel of a layer").run()
    assert not problems(at) and not at.error
    captions = str([image.proto for image in at.get("image")])
    assert "on your picture" in captions and captions.count("held-out #") == 3


def test_the_depth_page_explains_every_block_with_its_receptive_field():
    at = open_with_model("depth", "shapes_gap")
    assert not problems(at) and not at.error
    labels = {m.label: m.value for m in at.metric}
    assert labels["Cells"] == "8x8" and labels["What one cell can see"] == "53x53 pixels"
    at.select_slider[0].set_value("layer1").run()
    assert not problems(at)
    assert {m.label: m.value for m in at.metric}["What one cell can see"] == "3x3 pixels"
    assert "A layer1 cell sits 2 input pixels from its neighbour" in page_text(at)


# --- shareable views -----------------------------------------------------------------------------

SHARED = {"model": "shapes_gap", "seed": "3", "class": "4", "cmap": "viridis", "alpha": "0.35"}


def open_link(page: str, params: dict[str, str]) -> AppTest:
    """What a student gets from a copied address: the app opened with these query parameters."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(params)
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_a_link_restores_the_sidebar_on_every_page_and_the_page_keeps_it_in_the_url(page):
    at = open_link(page, SHARED)
    assert not problems(at)
    assert at.session_state["model"] == "shapes_gap" and at.session_state["shapes_seed"] == 3
    assert class_box(at).value == 4 and at.session_state["cmap"] == "viridis" and at.session_state["alpha"] == 0.35
    for name, value in SHARED.items():
        assert at.query_params[name] == value, name


@pytest.mark.parametrize("page, params, check", [
    ("adversarial", {"attack_epsilon": "7", "attack_steps": "3", "attack_stop": "0"},
     lambda at: (at.slider(key="attack_epsilon").value, at.slider(key="attack_steps").value,
                 at.toggle(key="attack_stop").value) == (7, 3, False)),
    ("depth", {"model": "shapes_gap", "depth": "layer2"},
     lambda at: {m.label: m.value for m in at.metric}["What one cell can see"] == "9x9 pixels"),
    ("grad_cam", {"weights_layer": "layer2"}, lambda at: at.button_group(key="weights_layer").value == "layer2"),
    ("gallery", {"methods_perturbation": "occlusion", "gallery_stages": "layer4"},
     lambda at: at.button_group(key="methods_perturbation").value == ["occlusion"]),
    ("bias", {"bias_seed": "12", "bias_tag": "lies (another class's tag)"},
     lambda at: at.number_input(key="bias_seed").value == 12),
    ("units", {"model": "shapes_gap", "excite": "a channel of a layer", "unit_layer": "layer2", "unit_channel": "5"},
     lambda at: at.number_input(key="unit_channel").value == 5),
])
def test_a_link_restores_the_page_controls(page, params, check):
    at = open_link(page, params)
    assert not problems(at) and not at.error
    assert check(at)
    for name, value in params.items():
        assert at.query_params[name] == value, name


def test_a_link_with_values_that_no_longer_exist_opens_the_defaults_with_one_notice():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"model": "vgg99", "class": "5000", "sample": "Gone", "cmap": "rainbowz", "alpha": "2",
                            "weights_layer": "layer9"})
    notices = []
    for step in (at.run, lambda: at.switch_page("pages/grad_cam.py").run()):
        step()
        assert not problems(at) and not at.error
        shown = [i.value for i in at.info if "does not have" in i.value]
        assert len(shown) <= 1  # one notice a run, however many values were wrong
        notices += shown
    for asked in ("the model 'vgg99'", "the class '5000'", "the sample 'Gone'", "the colormap 'rainbowz'",
                  "the opacity '2'", "'layer9'"):
        assert any(asked in notice for notice in notices), asked
    assert at.session_state["model"] == "efficientnet_lite0" and at.session_state["cmap"] == "jet"
    assert at.query_params["model"] == "efficientnet_lite0"


def test_an_uploaded_picture_says_it_cannot_travel_in_a_link():
    at = open_page("grad_cam")
    at.radio(key="widget:image_source").set_value("Upload").run()
    assert any("cannot travel in a link" in c.value for c in at.sidebar.caption)
    assert "sample" not in at.query_params


def test_presenter_mode_folds_the_lesson_hides_the_code_and_travels_in_the_url():
    at = open_link("cam", {"present": "1"})
    assert not problems(at)
    assert at.toggle(key="widget:presenter").value is True
    labels = [e.label for e in at.expander]
    assert "The lesson, in words" in labels and "Show the code" not in labels
    at.toggle(key="widget:presenter").set_value(False).run()
    assert "Show the code" in [e.label for e in at.expander] and at.query_params["present"] == "0"


# --- the classroom -------------------------------------------------------------------------------


def test_a_whole_quiz_round_is_scored_and_ends_with_the_papers_result():
    from ui.quiz import QUESTIONS
    from ui.tally import Tally

    before = len(Tally().answers("quiz"))
    at = open_page("quiz")
    for number in range(QUESTIONS):
        assert not problems(at) and not at.error, number
        assert f"Question {number + 1} of {QUESTIONS}" in page_text(at)
        radio = next(r for r in at.radio if r.label == "Which class does it explain?")
        radio.set_value(radio.options[0])
        next(b for b in at.button if b.label == "Answer").click().run()
        assert any(("Right" in m or "Not this time" in m) for m in (*[e.value for e in at.success],
                                                                     *[e.value for e in at.error]))
        next(b for b in at.button if b.label == "Next question").click().run()
    assert "44.44%" in page_text(at) and "61.23%" in page_text(at)
    table = at.dataframe[0].value
    assert table["questions"].sum() == QUESTIONS
    assert len(Tally().answers("quiz")) == before + QUESTIONS


def test_where_would_you_look_asks_for_a_click_first():
    at = open_page("where")
    assert not problems(at)
    assert any("Click on the picture" in i.value for i in at.info)


def test_the_class_results_page_shows_the_tally_and_the_teacher_can_reset_it():
    from ui.tally import Tally

    store = Tally()
    store.record("quiz", "tiger cat", session="t1", correct=True, detail="grad_cam")
    store.record("quiz", "circle", session="t2", correct=False, detail="guided_backprop")
    store.record("where", "hit", session="t1", correct=True, detail="shapes_gap|model hit")
    at = open_page("class_results")
    assert not problems(at) and not at.error
    assert at.get("plotly_chart") and "answers from" in "\n".join(c.value for c in at.caption)
    assert next(b for b in at.button if b.label == "Delete all answers").disabled
    at.text_input(key="results_reset_code").set_value("DELETE").run()
    next(b for b in at.button if b.label == "Delete all answers").click().run()
    assert not problems(at)
    assert Tally().answers() == []


def test_an_unusable_tally_gives_a_message_and_the_pages_keep_working(tmp_path, monkeypatch):
    blocked = tmp_path / "a_file_not_a_folder"
    blocked.write_text("not a folder")
    monkeypatch.setenv("GRADCAM_DATA_DIR", str(blocked))
    at = open_page("weak_strong")
    next(r for r in at.radio if r.label == "Which model would you trust more?").set_value("Model B")
    next(b for b in at.button if b.label == "Answer").click().run()
    assert not problems(at)
    assert any("class tally cannot use" in w.value for w in at.warning)
    assert "**Model B** was" in page_text(at)  # the reveal still comes
    results = open_page("class_results")
    assert not problems(results) and any("class tally cannot use" in w.value for w in results.warning)


def test_spot_the_difference_asks_first_then_shows_what_tells_the_classes_apart_and_tallies_the_guess():
    from ui.tally import Tally

    before = len(Tally().answers("spot_the_difference"))
    at = open_page("spot_difference")
    assert not problems(at) and not at.error
    assert any("Answer to see what the model goes by" in i.value for i in at.info)
    assert not at.radio(key="spot_guess_1").value and "Round 2" not in [h.value for h in at.subheader]
    at.radio(key="spot_guess_1").set_value("boxer").run()
    assert not problems(at) and not at.error
    assert any("The model says 'bull mastiff'" in w.value for w in at.warning)  # Lite0: 33% against 15%
    captions = "\n".join(picture.caption for image in at.get("image") for picture in image.proto.imgs)
    assert "'bull mastiff' rather than 'boxer'" in captions and "'boxer' rather than 'bull mastiff'" in captions
    assert "Finer-CAM" in page_text(at) and "Round 2" in [h.value for h in at.subheader]
    at.radio(key="spot_guess_2").set_value("I cannot tell").run()
    assert not problems(at) and not at.error
    answers = Tally().answers("spot_the_difference")
    assert len(answers) == before + 2
    assert [(a.choice, a.correct) for a in answers[-2:]] == [("boxer", False), ("I cannot tell", None)]
    at.radio(key="spot_guess_1").set_value("bull mastiff").run()  # a changed mind is not counted twice
    assert len(Tally().answers("spot_the_difference")) == before + 2
    results = open_page("class_results")
    assert not problems(results)
    assert "18 · Spot the difference" in [h.value for h in results.subheader]


@pytest.mark.parametrize("model", ["efficientnet_lite0", "shapes_fc"])
def test_the_unit_page_splits_a_layer_into_concepts(model):
    at = open_with_model("units", model)
    assert not problems(at) and not at.error
    assert "Concepts in a layer (Deep Feature Factorization)" in [h.value for h in at.subheader]
    assert page_text(at).count("% of the picture") == 4
    at.slider(key="concepts").set_value(6).run()
    assert not problems(at) and not at.error
    assert page_text(at).count("% of the picture") == 6
    captions = "\n".join(c.value for c in at.caption)
    if model == "shapes_fc":  # a flatten-MLP head cannot score a concept: the page says why
        assert "No class names:" in captions and "flattens the feature maps" in captions
    else:
        assert "No class names:" not in captions
        at.button_group(key="concept_layer").set_value("layer2").run()
        assert not problems(at)
        assert "No class names: the classifier reads layer4" in "\n".join(c.value for c in at.caption)


def test_the_gallery_shows_the_superpixels_of_lime_and_kernel_shap():
    at = open_page("gallery")
    at.selectbox(key="widget:model").set_value("shapes_gap").run()
    at.button_group(key="methods_perturbation").set_value(["lime"]).run()
    assert not problems(at) and not at.error, [e.value for e in at.error]
    assert "The superpixels of LIME and Kernel SHAP" in [h.value for h in at.subheader]
    captions = [picture.caption for image in at.get("image") for picture in image.proto.imgs]
    assert any(caption.endswith("superpixels (SLIC)") for caption in captions)


def test_your_network_loads_a_state_dict_in_this_session_only_and_refuses_a_bad_file():
    import torch
    import torchvision

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(torchvision.models.shufflenet_v2_x0_5(num_classes=3).state_dict(), buffer)
    at = open_page("grad_cam")
    at.text_input(key="widget:your_filter").set_value("shufflenet_v2_x0_5").run()
    at.selectbox(key="widget:your_arch").set_value("shufflenet_v2_x0_5")
    at.file_uploader(key="your_weights").set_value(("mine.pth", buffer.getvalue(), "application/octet-stream"))
    at.file_uploader(key="your_categories").set_value(("names.txt", b"cat\ndog\nbird\n", "text/plain"))
    at.button(key="your_load").click().run()
    assert not problems(at) and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="widget:model").value == "your_network"
    assert sorted(option.split(" (")[0] for option in class_box(at).options) == ["bird", "cat", "dog"]
    assert at.get("image")
    assert any("No receptive field" in i.value for i in at.info)  # ShuffleNet's channel shuffle mixes cells
    at.switch_page("pages/depth.py").run()
    assert not problems(at) and at.get("image")
    assert any("No receptive fields for this network" in i.value for i in at.info)
    at.switch_page("pages/grad_cam.py").run()
    other = open_page("grad_cam")
    assert "your_network" not in other.selectbox(key="widget:model").options

    at.file_uploader(key="your_weights").set_value(("notes.pth", b"not weights", "application/octet-stream"))
    at.button(key="your_load").click().run()
    assert not problems(at)
    assert "notes.pth: The checkpoint is not a PyTorch checkpoint" in " ".join(e.value for e in at.error)
    at.radio(key="widget:your_source").set_value("timm").run()
    at.text_input(key="widget:your_filter").set_value("vit_giant_patch14_dinov2").run()
    at.file_uploader(key="your_weights").set_value(None)
    at.button(key="your_load").click().run()
    assert "too large for this server" in " ".join(e.value for e in at.error)
    assert at.selectbox(key="widget:model").value == "your_network"  # the network loaded before stays


# --- 19 · CNN or transformer? -------------------------------------------------------------------


@pytest.fixture
def fresh_models():
    """The shared classifiers and maps forgotten before and after: a test's stand-in network (the shapes ViT
    with random weights, or none) must not be served to another test under the real one's name."""
    from ui import resources

    def clear():
        for cached in (resources.classifier, resources.probabilities, resources._fast_explanation):
            cached.clear()

    clear()
    yield
    clear()


def random_shapes_vit(monkeypatch) -> None:
    """``shapes_vit`` with random weights, whether or not its trained weights are shipped."""
    from gradcam_core import shapes

    monkeypatch.setitem(gc.models.MODELS, "shapes_vit",
                        lambda pretrained, progress: shapes.load_shapes_model("shapes_vit", pretrained=False))


def captions(at: AppTest) -> list[str]:
    """The captions of every picture on the page, those of picture lists included."""
    return [picture.caption for element in at.get("image") for picture in element.proto.imgs]


def test_cnn_or_transformer_explains_both_networks_on_one_picture(monkeypatch, fresh_models):
    random_shapes_vit(monkeypatch)
    monkeypatch.setattr(gc.models, "cached_pretrained", lambda name: False)  # as on a machine with no ViT cached
    at = open_link("cnn_vs_vit", {"vit_seed": "12"})
    assert not problems(at) and not at.error, [e.value for e in at.error]
    assert at.number_input(key="vit_seed").value == 12
    said = " ".join(m.value for m in at.markdown)
    assert "**Shapes: GAP head** says" in said and "**Shapes: Vision Transformer** says" in said
    shown = " · ".join(captions(at))  # a strip of maps is one picture; its caption names each, hit or miss
    for title in ("layer1", "layer4", "block 1", "block 4", "CAM",
                  *(gc.METHODS[m].label for m in ("attention_rollout", "transformer_attribution", "legrad"))):
        assert f"{title}: hit" in shown or f"{title}: miss" in shown, (title, shown)
    infos = " ".join(i.value for i in at.info)
    assert "No ImageNet Vision Transformer's weights are in this computer's cache" in infos
    assert "timm.create_model('deit_tiny_patch16_224', pretrained=True)" in infos
    assert any("Pointing game" in str(chart.proto) for chart in at.get("plotly_chart"))  # the measured table
    before = captions(at)
    at.button(key="vit_new").click().run()
    assert not problems(at) and at.number_input(key="vit_seed").value == 13 and at.query_params["vit_seed"] == "13"
    assert "Picture #13" in " ".join(captions(at)) and captions(at) != before


LOAD_SCORES = gc.evaluation.load_scores  # the real one, before a test replaces it


def test_cnn_or_transformer_says_what_is_missing_without_an_exception(monkeypatch, fresh_models):
    def missing(pretrained, progress):
        raise gc.WeightsUnavailableError("assets/models/shapes_vit.pt is missing.")

    monkeypatch.setitem(gc.models.MODELS, "shapes_vit", missing)
    monkeypatch.setattr(gc.evaluation, "load_scores",
                        lambda model, *args: None if model == "shapes_vit" else LOAD_SCORES(model, *args))
    at = open_link("cnn_vs_vit", {"vit_seed": "not a number"})
    assert not problems(at) and not at.error, [e.value for e in at.error]
    infos = " ".join(i.value for i in at.info)
    assert "trained weights are not here yet" in infos and "shapes_vit.pt is missing" in infos
    assert "The Vision Transformer's table is not shipped yet" in infos
    assert "evaluate --model shapes_vit --json" in infos
    assert "which this version of the app does not have" in infos  # the bad seed in the link: one notice
    assert at.number_input(key="vit_seed").value == 0
    assert "layer4: " in " ".join(captions(at)) and "block 4: " not in " ".join(captions(at))  # the CNN's half



def test_cnn_or_transformer_sets_an_imagenet_vit_from_the_cache_against_efficientnet(monkeypatch, fresh_models):
    random_shapes_vit(monkeypatch)
    # deit_tiny "in the cache": load_model takes its cached weights, or random ones here (it never downloads)
    monkeypatch.setattr(gc.models, "cached_pretrained", lambda name: name == "timm:deit_tiny_patch16_224")
    at = open_page("cnn_vs_vit")
    assert not problems(at) and not at.error, [e.value for e in at.error]
    shown = captions(at)
    assert "EfficientNet-Lite0: Grad-CAM at layer4" in shown
    assert "deit_tiny_patch16_224: Grad-CAM at blocks.11.norm1" in shown
    assert "deit_tiny_patch16_224: attention rollout (every class)" in shown
    assert "Class **'bull mastiff'**" in " ".join(m.value for m in at.markdown)  # the sidebar's class



# --- Every page with a Vision Transformer in the sidebar ----------------------------------------


def layout_pages() -> list[str]:
    """Every page of the navigation (ui/layout.py), but page 19, which has its own tests above."""
    from ui import layout

    return [Path(path).stem for path, _, _ in layout.PAGES if path != "pages/cnn_vs_vit.py"]


#: What a page says on the shapes ViT: a CNN-only lesson its one sentence and where to go, the others the
#: transformer's own reading of what they show.
ON_A_VIT = {
    "cam": "**This lesson needs a CNN.**",
    "compare": "**This comparison needs a CNN with a GAP head.**",
    "grad_cam": "keeps one grid of 8x8 patch tokens",
    "depth": "self-attention lets each token read every patch",
    "activations": "gives one token per patch",
}


@pytest.mark.parametrize("page", layout_pages())
def test_every_page_works_or_says_why_with_the_shapes_vision_transformer(page):
    at = open_page("home")
    at.selectbox(key="widget:model").set_value("shapes_vit").run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert at.selectbox(key="widget:model").value == "shapes_vit"
    assert not problems(at), problems(at)
    assert not at.error, [e.value for e in at.error]  # a lesson that needs a CNN says so in an info, not an error
    text = page_text(at)
    assert "Traceback" not in text and "Cannot follow the receptive field" not in text
    assert ON_A_VIT.get(page, "") in text
    if page in ("cam", "compare"):
        assert "Page 3 (Grad-CAM, layer by layer)" in text and at.get("image")  # and the map that does apply
    if page == "guided":
        assert "has no max pooling" not in text  # a transformer's deconvnet picture does depend on the image
    if page != "home":
        assert at.get("image") or at.get("plotly_chart"), f"{page} shows no figure"


def test_a_timm_vit_as_your_network_explains_its_tokens_on_the_layer_pages_and_the_gallery():
    at = open_page("grad_cam")
    at.radio(key="widget:your_source").set_value("timm").run()
    at.text_input(key="widget:your_filter").set_value("deit_tiny_patch16_224").run()
    at.selectbox(key="widget:your_arch").set_value("deit_tiny_patch16_224")
    at.button(key="your_load").click().run()  # random weights: nothing is downloaded
    assert not problems(at) and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="widget:model").value == "your_network"
    assert "keeps one grid of 14x14 patch tokens" in page_text(at)
    assert "blocks.11.norm1 · 14x14" in captions(at)
    for page in ("gallery", "depth", "cam"):
        at.switch_page(f"pages/{page}.py").run()
        assert not problems(at) and not at.error, (page, [e.value for e in at.error])
        assert at.get("image"), page
    assert "**This lesson needs a CNN.**" in page_text(at)

"""gradcam_core.evaluation and ``python -m gradcam_core evaluate``: every method measured.

On a few held-out shapes pictures (8, with 10 deletion steps, so every run takes a second or
two) the table must hold a row per method with each value in its range, CAM must refuse the
flattening head of shapes_fc and say why, and CAM and Grad-CAM must score the same on
shapes_gap: at a ``layer4 -> GAP -> fc`` head Grad-CAM's channel weights are CAM's divided by
the 8x8 cells (the gradient of the mean), both maps go through the same ReLU of the weighted sum,
and every metric here looks only at the order of the pixels, at fractions of the maximum, or at
the min-max scaled map, so a positive scale changes nothing (up to float rounding).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields

import numpy as np
import pytest
import torch
from conftest import ASSETS, assert_no_hooks, assert_same_state, snapshot

import gradcam_core as gc
from gradcam_core import evaluation, metrics, shapes
from gradcam_core.__main__ import main

N = 8
STEPS = 10
SHAPES_METHODS = ["cam", "grad_cam", "guided_backprop"]
#: The measured fields of a row, and the ground-truth ones among them.
VALUES = [f.name for f in fields(evaluation.MethodScores) if f.name not in ("method", "label", "refusal")]
LOCATED = ["pointing_game", "box_iou", "mask_iou", "mask_iou_tight"]


@pytest.fixture(scope="module")
def shapes_fc() -> gc.Classifier:
    return gc.load_model("shapes_fc")


@pytest.fixture(scope="module")
def shapes_data(shapes_gap) -> evaluation.EvaluationSet:
    return evaluation.evaluation_set(shapes_gap, n=N)


@pytest.fixture(scope="module")
def shapes_run(shapes_gap, shapes_data):
    """The rows for SHAPES_METHODS on shapes_gap, 4 images a batch, and every progress call."""
    calls = []
    before = snapshot(shapes_gap.module)
    rows = evaluation.evaluate(shapes_gap, shapes_data, SHAPES_METHODS, batch_size=4, steps=STEPS,
                               progress=lambda label, done, total: calls.append((label, done, total)))
    assert_same_state(before, shapes_gap.module)
    assert_no_hooks(shapes_gap.module)
    return rows, calls


def assert_in_ranges(row: evaluation.MethodScores, n: int, located: bool) -> None:
    for name in ("pointing_game", "box_iou"):  # rates over n images
        value = getattr(row, name)
        if not located:
            assert value is None, name
            continue
        assert 0.0 <= value <= 1.0, (name, value)
        assert value * n == pytest.approx(round(value * n), abs=1e-6), (name, value)
    for name in ("mask_iou", "mask_iou_tight"):
        value = getattr(row, name)
        assert (value is None) if not located else (0.0 <= value <= 1.0), (name, value)
    assert 0.0 <= row.deletion_auc <= 1.0 and 0.0 <= row.insertion_auc <= 1.0
    assert 0.0 <= row.average_drop <= 100.0
    assert 0.0 <= row.increase_in_confidence <= 100.0
    assert row.increase_in_confidence * n / 100 == pytest.approx(round(row.increase_in_confidence * n / 100))
    assert row.occlusion_correlation is None or -1.0 <= row.occlusion_correlation <= 1.0
    assert row.ms_per_image >= 0.0
    assert row.refusal == ""


def comparable(row: evaluation.MethodScores) -> dict:
    """A row's measured values, without its name and its time."""
    return {name: getattr(row, name) for name in VALUES if name != "ms_per_image"}


def assert_same_scores(first: evaluation.MethodScores, second: evaluation.MethodScores, rel: float, abs: float):
    """The same values left undefined (``None``, e.g. no ground truth), and the same numbers within tolerance."""
    a, b = comparable(first), comparable(second)
    undefined = {name for name, value in a.items() if value is None}
    assert undefined == {name for name, value in b.items() if value is None}
    numbers = [name for name in a if name not in undefined]
    assert {n: a[n] for n in numbers} == pytest.approx({n: b[n] for n in numbers}, rel=rel, abs=abs)


# --------------------------------------------------------------------------------------------
# The evaluation set
# --------------------------------------------------------------------------------------------


def test_a_shapes_network_is_evaluated_on_held_out_pictures(shapes_gap, shapes_data):
    batch = shapes.render(N, shapes.EVALUATION_SEED)
    assert torch.equal(shapes_data.images, batch.images)
    assert torch.equal(shapes_data.targets, batch.labels)  # the true class
    assert torch.equal(shapes_data.masks, batch.masks) and torch.equal(shapes_data.boxes, batch.boxes)
    assert f"{N} held-out" in shapes_data.description
    other = evaluation.evaluation_set(shapes_gap, n=3, seed=5)
    assert torch.equal(other.images, shapes.render(3, 5).images)


def test_the_shapes_vit_is_evaluated_on_the_same_held_out_pictures():
    vit = gc.load_model("shapes_vit", pretrained=False)
    data = evaluation.evaluation_set(vit, n=3)
    assert torch.equal(data.images, shapes.render(3, shapes.EVALUATION_SEED).images)
    assert data.masks is not None and "3 held-out" in data.description


def test_an_imagenet_model_is_evaluated_on_the_sample_photos_for_its_top_class(efficientnet):
    data = evaluation.evaluation_set(efficientnet)
    photos = sorted(p for p in ASSETS.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    assert len(photos) == 7
    assert data.images.shape == (7, 3, 224, 224)
    assert torch.equal(data.images[0:1], efficientnet.preprocess(photos[0]))
    with torch.no_grad():
        assert data.targets.tolist() == efficientnet.module(data.images).argmax(dim=1).tolist()
    assert data.masks is None and data.boxes is None
    assert "7 sample photos" in data.description


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


def test_every_method_gets_a_row_with_values_in_their_ranges(shapes_run):
    rows, _ = shapes_run
    assert [row.method for row in rows] == SHAPES_METHODS
    assert [row.label for row in rows] == [gc.METHODS[m].label for m in SHAPES_METHODS]
    for row in rows:
        assert_in_ranges(row, N, located=True)
        assert all(getattr(row, name) is not None for name in VALUES), row


def test_progress_is_reported_after_each_chunk_of_each_method(shapes_run):
    _, calls = shapes_run
    assert calls == [(gc.METHODS[m].label, done, N) for m in SHAPES_METHODS for done in (4, 8)]


def test_cam_and_grad_cam_score_the_same_on_a_gap_head(shapes_run):
    rows, _ = shapes_run
    assert_same_scores(rows[0], rows[1], rel=1e-5, abs=1e-5)


def test_the_grad_cam_row_is_the_metrics_of_grad_cam_maps_of_the_true_class(shapes_gap, shapes_data, shapes_run):
    """Layer methods explain the classifier's cam_layer, for each picture's true class."""
    row = shapes_run[0][1]
    model, x, labels = shapes_gap.module, shapes_data.images, shapes_data.targets
    maps = gc.GradCAM(model, [shapes_gap.cam_layer])(x, labels).maps[shapes_gap.cam_layer]
    assert row.pointing_game == pytest.approx(metrics.pointing_game_hits(maps, shapes_data.masks).float().mean().item())
    boxes = metrics.boxes_from_maps(maps, (64, 64))
    assert row.box_iou == pytest.approx((metrics.box_ious(boxes, shapes_data.boxes) > 0.5).float().mean().item())
    assert row.mask_iou == pytest.approx(metrics.mask_ious(maps, shapes_data.masks).mean().item(), rel=1e-5)
    assert row.mask_iou_tight == pytest.approx(
        metrics.mask_ious(maps, shapes_data.masks, shapes.TIGHT_THRESHOLD).mean().item(), rel=1e-5)
    deletion = metrics.deletion(model, x, maps, labels, steps=STEPS)
    insertion = metrics.insertion(model, x, maps, labels, steps=STEPS)
    assert row.deletion_auc == pytest.approx(deletion.auc.mean().item(), rel=1e-4)
    assert row.insertion_auc == pytest.approx(insertion.auc.mean().item(), rel=1e-4)
    assert (row.average_drop, row.increase_in_confidence) == pytest.approx(
        metrics.average_drop(model, x, maps, labels), rel=1e-4, abs=1e-4)


def test_a_pixel_space_picture_is_reduced_to_its_largest_absolute_colour(shapes_gap, shapes_data, shapes_run):
    row = shapes_run[0][2]
    model, x, labels = shapes_gap.module, shapes_data.images, shapes_data.targets
    maps = gc.GuidedBackprop(model)(x, labels).abs().amax(dim=1)
    assert row.deletion_auc == pytest.approx(metrics.deletion(model, x, maps, labels, steps=STEPS).auc.mean().item(),
                                             rel=1e-4)
    assert row.average_drop == pytest.approx(metrics.average_drop(model, x, maps, labels)[0], rel=1e-4, abs=1e-4)


def test_cam_refuses_the_flattening_head_and_says_why(shapes_fc):
    data = evaluation.evaluation_set(shapes_fc, n=4)
    rows = evaluation.evaluate(shapes_fc, data, ["cam", "grad_cam"], steps=5)
    cam, grad_cam = rows
    assert cam.method == "cam" and "flattens the feature maps" in cam.refusal and "GradCAM" in cam.refusal
    assert all(getattr(cam, name) is None for name in VALUES)
    assert_in_ranges(grad_cam, 4, located=True)
    table = evaluation.markdown_table(rows, located=True)
    lines = table.splitlines()
    assert lines[2] == "| CAM |" + " refuses |" * 9
    assert lines[3].startswith("| Grad-CAM | ")
    assert lines[4] == "" and lines[5] == f"CAM: {cam.refusal}"  # the reason, below the table


def test_without_ground_truth_only_faithfulness_is_measured(shapes_gap):
    batch = shapes.render(4, seed=21)
    data = evaluation.EvaluationSet("four pictures, no masks", batch.images, batch.labels)
    rows = evaluation.evaluate(shapes_gap, data, ["grad_cam"], steps=5)
    assert_in_ranges(rows[0], 4, located=False)
    assert all(getattr(rows[0], name) is None for name in LOCATED)


def test_evaluate_refuses_an_unknown_method_before_any_work(shapes_gap, shapes_data):
    with pytest.raises(ValueError, match="magic_cam"):
        evaluation.evaluate(shapes_gap, shapes_data, ["grad_cam", "magic_cam"],
                            progress=lambda *a: pytest.fail("work started"))


def test_an_imagenet_model_on_one_photo(efficientnet):
    """The ImageNet path, on one sample photo (cat_dog.png, the third in name order): no ground
    truth, every faithfulness value in range, and CAM equal to Grad-CAM at EfficientNet's GAP head."""
    full = evaluation.evaluation_set(efficientnet)
    data = evaluation.EvaluationSet("one photo", full.images[2:3], full.targets[2:3])
    rows = evaluation.evaluate(efficientnet, data, ["grad_cam", "cam"], steps=5)
    assert [row.method for row in rows] == ["grad_cam", "cam"]
    for row in rows:
        assert_in_ranges(row, 1, located=False)
    assert_same_scores(rows[0], rows[1], rel=1e-4, abs=1e-5)
    table = evaluation.markdown_table(rows, located=False)
    assert "pointing game" not in table and len(table.splitlines()) == 4


# --------------------------------------------------------------------------------------------
# markdown_table
# --------------------------------------------------------------------------------------------

ROW = evaluation.MethodScores("grad_cam", "Grad-CAM", 0.875, 0.25, 0.3228, 0.5322, 0.1958, 0.918, 11.7026, 25.0,
                              0.5253, 3.21)


def cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip() for c in line[1:-1].split("|")]


def number(cell: str) -> float:
    return float(cell.rstrip("%"))


@pytest.mark.parametrize("located", [True, False])
def test_markdown_table_columns_with_and_without_ground_truth(located):
    no_occlusion = evaluation.MethodScores(**{**asdict(ROW), "method": "cam", "label": "CAM",
                                              "occlusion_correlation": None})
    lines = evaluation.markdown_table([ROW, no_occlusion], located).splitlines()
    head = cells(lines[0])
    width = 10 if located else 7
    assert len(head) == width and head[0] == "method"
    truth = ("pointing game" in lines[0], "box IoU" in lines[0], "mask IoU" in lines[0])
    assert truth == ((True,) * 3 if located else (False,) * 3)
    assert "deletion AUC" in lines[0] and "insertion AUC" in lines[0] and "Average Drop" in lines[0]
    assert "Increase in Confidence" in lines[0] and "occlusion" in lines[0]
    assert set(lines[1]) <= set("|-:") and len(cells(lines[1])) == width
    assert len(lines) == 4
    row, other = cells(lines[2]), cells(lines[3])
    assert len(row) == len(other) == width and row[0] == "Grad-CAM" and other[0] == "CAM"
    if located:
        assert number(row[1]) == pytest.approx(87.5, abs=0.05) and row[1].endswith("%")  # a rate, in percent
        assert number(row[2]) == pytest.approx(25.0, abs=0.05)
        assert [float(v) for v in row[3].split("/")] == pytest.approx([0.3228, 0.5322], abs=0.005)
        row, other = row[4:], other[4:]
    else:
        row, other = row[1:], other[1:]
    expected = [0.1958, 0.918, 11.7026, 25.0, 0.5253, 3.21]
    for cell, value in zip(row, expected):
        assert number(cell) == pytest.approx(value, abs=0.05 if value > 1 else 0.005), (cell, value)
    assert other[4] == "n/a"


# --------------------------------------------------------------------------------------------
# load_scores
# --------------------------------------------------------------------------------------------


def test_load_scores_reads_what_as_records_wrote(tmp_path):
    refused = evaluation.MethodScores("cam", "CAM", *([None] * 10), refusal="CAM needs a GAP head.")
    record = {"model": "shapes_fc", "description": "d", "layer": "layer4", "located": True,
              "rows": evaluation.as_records([ROW, refused])}
    (tmp_path / "evaluation_shapes_fc.json").write_text(json.dumps(record))
    loaded = evaluation.load_scores("shapes_fc", tmp_path)
    assert loaded is not None
    meta, rows = loaded
    assert meta == {"model": "shapes_fc", "description": "d", "layer": "layer4", "located": True}
    assert rows == [ROW, refused]


@pytest.mark.parametrize("content", [
    "{not json",
    "",
    json.dumps({"model": "shapes_gap"}),  # no rows
    json.dumps({"rows": [{"method": "cam"}]}),  # a row without its fields
    json.dumps({"rows": [{**asdict(ROW), "colour": "red"}]}),  # a field no row has
    json.dumps([1, 2, 3]),
])
def test_a_broken_scores_file_counts_as_missing(tmp_path, content):
    (tmp_path / "evaluation_shapes_gap.json").write_text(content)
    assert evaluation.load_scores("shapes_gap", tmp_path) is None


def test_a_missing_scores_file_is_none(tmp_path):
    assert evaluation.load_scores("shapes_gap", tmp_path) is None
    assert evaluation.load_scores("shapes_gap", tmp_path / "no such folder") is None


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def test_the_cli_prints_a_table_and_writes_what_load_scores_reads(shapes_gap, tmp_path, capsys):
    path = tmp_path / "out" / "evaluation_shapes_gap.json"
    argv = ["evaluate", "--model", "shapes_gap", "--methods", "grad_cam,cam", "--n", str(N), "--steps", str(STEPS),
            "--json", str(path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    data = evaluation.evaluation_set(shapes_gap, n=N)
    assert shapes_gap.description in out and data.description in out and "layer4" in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 4 and "pointing game" in table[0]
    assert table[2].startswith("| Grad-CAM |") and table[3].startswith("| CAM |")
    # progress on standard error, one bar per method, none on standard output
    assert "Grad-CAM" in err and "CAM" in err and f"{N}/{N}" in err and "[" not in out

    loaded = evaluation.load_scores("shapes_gap", path.parent)
    assert loaded is not None
    meta, rows = loaded
    assert meta == {"model": "shapes_gap", "description": data.description, "layer": "layer4", "located": True}
    assert [row.method for row in rows] == ["grad_cam", "cam"]
    # the file holds the very numbers printed
    assert evaluation.markdown_table(rows, located=True) in out
    # and the numbers evaluate gives
    expected = evaluation.evaluate(shapes_gap, data, ["grad_cam", "cam"], steps=STEPS)
    for row, want in zip(rows, expected):
        assert_same_scores(row, want, rel=1e-5, abs=1e-6)


def test_the_cli_shows_a_refusal_and_its_reason(tmp_path, capsys):
    path = tmp_path / "evaluation_shapes_fc.json"
    argv = ["evaluate", "--model", "shapes_fc", "--methods", "cam,grad_cam", "--n", "4", "--steps", "5",
            "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| CAM |" + " refuses |" * 9 in out
    reasons = [line for line in out.splitlines() if line.startswith("CAM: ")]
    assert len(reasons) == 1 and "flattens the feature maps" in reasons[0]
    assert out.index(reasons[0]) > out.index("| Grad-CAM |")  # below the table
    _, rows = evaluation.load_scores("shapes_fc", tmp_path)
    assert rows[0].refusal and rows[0].deletion_auc is None and rows[1].refusal == ""


@pytest.mark.parametrize("methods", ["grad_cam,magic_cam", "magic_cam", ",", " "])
def test_the_cli_refuses_unknown_methods_with_exit_code_2(methods, tmp_path, capsys):
    path = tmp_path / "scores.json"
    assert main(["evaluate", "--model", "shapes_gap", "--methods", methods, "--n", "2", "--json", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "score_cam" in err  # the choices are listed
    assert ("magic_cam" in err) == ("magic_cam" in methods)
    assert not path.exists()


def test_the_cli_refuses_an_unknown_model(capsys):
    assert main(["evaluate", "--model", "no_such_model", "--methods", "grad_cam"]) == 2
    error = capsys.readouterr().err
    assert "no_such_model" in error and "torchvision:<name>" in error


def test_the_scores_are_plain_json_numbers(shapes_run):
    rows, _ = shapes_run
    records = evaluation.as_records(rows)
    text = json.dumps(records)  # no tensors, no numpy scalars
    for record in json.loads(text):
        for name in VALUES:
            assert isinstance(record[name], float) and math.isfinite(record[name]), (name, record[name])
    assert np.isfinite([r.deletion_auc for r in rows]).all()


def test_photo_labels_name_real_classes_for_every_labelled_photo():
    labels = gc.evaluation.photo_labels(gc.models.imagenet_categories())
    assert all(path.is_file() for path in labels)
    assert labels[gc.evaluation.SAMPLE_IMAGES / "grace_hopper.jpg"] == [652]  # 'military uniform'
    assert labels[gc.evaluation.SAMPLE_IMAGES / "astronaut.png"] == []  # no ImageNet class fits
    assert gc.evaluation.SAMPLE_IMAGES / "hard" / "horse.png" in labels


def test_photo_labels_refuse_class_names_the_model_lacks():
    with pytest.raises(ValueError, match="does not have: .*military uniform"):
        gc.evaluation.photo_labels(["tabby", "tripod"])

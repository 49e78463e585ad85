"""gradcam_core.__main__: every registered method from the command line, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import gradcam_core as gc
from gradcam_core import shapes
from gradcam_core.__main__ import ALIASES, main

SEED = 3


@pytest.fixture(scope="module")
def shapes_picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "shape.png"
    Image.fromarray(shapes.render(1, seed=SEED).pictures[0]).save(path)
    return path


@pytest.mark.parametrize("method", [name for name, m in gc.METHODS.items() if "CNN" in m.families])
def test_every_registered_method_writes_its_pictures(method, shapes_picture, tmp_path, capsys):
    label = int(shapes.render(1, seed=SEED).labels[0])
    argv = [str(shapes_picture), "--model", "shapes_gap", "--method", method, "--layers", "layer3,layer4",
            "--target", str(label), "--window", "16", "--stride", "8", "-o", str(tmp_path)]
    assert main(argv) == 0
    written = sorted(tmp_path.glob("*.png"))
    assert [str(p) for p in written] == sorted(capsys.readouterr().out.split())
    layers = {"cam": 1}.get(method, 2) if gc.METHODS[method].layered else 1
    assert len(written) == layers
    for path in written:
        assert method in path.name and path.name.endswith(f"_{shapes.CLASSES[label]}.png")
        picture = np.asarray(Image.open(path))
        assert picture.shape[:2] == (64, 64) and picture.std() > 0  # the true class: never an empty map


@pytest.mark.parametrize("alias", list(ALIASES))
def test_the_earlier_method_names_still_work(alias, shapes_picture, tmp_path):
    assert main([str(shapes_picture), "--model", "shapes_gap", "--method", alias, "-o", str(tmp_path)]) == 0
    assert all(ALIASES[alias] in p.name for p in tmp_path.glob("*.png"))


def test_an_unknown_method_is_refused_with_the_list(shapes_picture, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(shapes_picture), "--method", "magic_cam"])
    assert exit_.value.code == 2
    assert "score_cam" in capsys.readouterr().err


@pytest.mark.parametrize("method", [name for name, m in gc.METHODS.items() if "CNN" not in m.families])
def test_a_transformer_method_refuses_a_cnn_and_says_why(method, shapes_picture, tmp_path, capsys):
    assert main([str(shapes_picture), "--model", "shapes_gap", "--method", method, "-o", str(tmp_path)]) == 1
    assert "explains ViTs only, and ShapesGAP is a CNN" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("method", ["attention_rollout", "transformer_attribution", "legrad", "grad_cam"])
def test_the_shapes_vit_is_explained_from_the_command_line(method, shapes_picture, tmp_path, capsys):
    assert main([str(shapes_picture), "--model", "shapes_vit", "--method", method, "--layers", "blocks.3.norm1",
                 "-o", str(tmp_path)]) == 0
    (written,) = tmp_path.glob("*.png")
    assert method in written.name and np.asarray(Image.open(written)).shape[:2] == (64, 64)


def test_a_cnn_method_refuses_the_vit_and_says_why(shapes_picture, tmp_path, capsys):
    assert main([str(shapes_picture), "--model", "shapes_vit", "--method", "cam", "-o", str(tmp_path)]) == 1
    assert "CAM explains CNNs only, and VisionTransformer is a ViT" in capsys.readouterr().err


def test_cam_refuses_a_head_without_pooling_and_says_why(shapes_picture, tmp_path, capsys):
    assert main([str(shapes_picture), "--model", "shapes_fc", "--method", "cam", "-o", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "flattens the feature maps" in error and "GradCAM" in error
    assert not list(tmp_path.glob("*.png"))


def test_a_class_out_of_range_is_refused_before_any_work(shapes_picture, tmp_path, capsys):
    assert main([str(shapes_picture), "--model", "shapes_gap", "--target", "99", "-o", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_the_attack_command_prints_one_row_per_budget_and_mode(capsys):
    assert main(["attack", "--model", "shapes_gap", "--n", "12", "--epsilons", "2,8", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| 2/255", "| 8/255"))]
    assert len(rows) == 4 and "until it flips" in rows[0] and "all steps" in rows[1]
    assert "pointing game, original class: before" in out  # shapes have ground truth


def test_the_attack_command_refuses_a_bad_budget(capsys):
    assert main(["attack", "--model", "shapes_gap", "--epsilons", "two"]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_synthesize_command_writes_pictures_and_an_index(tmp_path, capsys):
    assert main(["synthesize", "--model", "shapes_gap", "--classes", "star", "--channels", "layer3:10",
                 "--steps", "2", "--out", str(tmp_path)]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [entry.get("target") for entry in index] == [4, None] and index[1]["channel"] == 10
    assert all(np.asarray(Image.open(tmp_path / entry["file"])).shape == (64, 64, 3) for entry in index)
    assert main(["synthesize", "--model", "shapes_gap", "--classes", "star", "--channels", "", "--steps", "2",
                 "--out", str(tmp_path)]) == 0
    assert len(json.loads((tmp_path / "index.json").read_text())) == 2  # made again: replaced, not added
    assert main(["synthesize", "--model", "shapes_gap", "--classes", "", "--channels", "layer3:999",
                 "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "has 64 channels; channel 999 does not exist" in capsys.readouterr().err
    assert main(["synthesize", "--model", "shapes_gap", "--classes", "", "--channels", "a:b:c", "--out", str(tmp_path)]) == 2
    assert "is not layer:channel" in capsys.readouterr().err


def test_the_sanity_command_prints_each_measure_and_draws_figure_2(shapes_picture, tmp_path, capsys):
    figure = tmp_path / "figure2.png"
    argv = [str(shapes_picture), "--model", "shapes_gap", "--methods", "grad_cam,saliency", "--figure", str(figure)]
    assert main(["sanity", *argv]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| Grad-CAM |") or line.startswith("| Saliency")]
    assert len(rows) == 2 * 3  # Spearman of |map|, SSIM, HOG for each method
    steps = len(gc.load_model("shapes_gap").stages) + 2  # the original, the classifier, then every stage
    assert all(row.count("|") == steps + 3 for row in rows)
    assert all(row.split("|")[3].strip() == "1.00" for row in rows)  # the original equals itself
    picture = np.asarray(Image.open(figure))
    assert picture.ndim == 3 and picture.shape[0] > 300 and picture.std() > 0


# --------------------------------------------------------------------------------------------
# A network of one's own: --model torchvision:<name>, --weights, --categories
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory):
    import torch
    import torchvision

    folder = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), folder / "ckpt.pth")
    (folder / "names.txt").write_text("circle\nsquare\nstar\n")
    return folder


def test_a_torchvision_architecture_with_a_checkpoint_and_class_names(student_checkpoint, shapes_picture, tmp_path,
                                                                      capsys):
    argv = [str(shapes_picture), "--model", "torchvision:resnet18", "--weights", str(student_checkpoint / "ckpt.pth"),
            "--categories", str(student_checkpoint / "names.txt"), "--target", "star", "-o", str(tmp_path)]
    assert main(argv) == 0
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    stages = gc.load_model("torchvision:resnet18", weights=student_checkpoint / "ckpt.pth").stages
    assert written == sorted(f"shape_grad_cam_{stage}_star.png" for stage in stages)
    assert main(["sanity", str(shapes_picture), "--model", "torchvision:resnet18", "--methods", "grad_cam",
                 "--weights", str(student_checkpoint / "ckpt.pth")]) == 0
    assert "weights from ckpt.pth" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--model", "vgg16"], "torchvision:<name>"),
    (["--model", "torchvision:resnet5"], "did you mean resnet50"),
    (["--model", "shapes_gap", "--weights", "ckpt.pth"], "cannot be given"),
    (["--model", "torchvision:resnet18", "--weights", "missing.pth"], "no checkpoint file"),
])
def test_a_model_that_cannot_be_loaded_is_refused_clearly(argv, message, shapes_picture, capsys):
    assert main([str(shapes_picture), *argv]) == 2
    assert message in capsys.readouterr().err
    assert main(["evaluate", *argv]) == 2
    assert message in capsys.readouterr().err

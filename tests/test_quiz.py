"""ui.quiz: the class-discrimination quiz's questions and scores."""

import gradcam_core as gc
from ui.quiz import PAPER, QUESTIONS, draw_question, quiz_methods, scores


def test_the_paper_numbers_are_the_papers():
    assert PAPER == {"guided_backprop": 44.44, "guided_grad_cam": 61.23}
    assert round(PAPER["guided_grad_cam"] - PAPER["guided_backprop"], 2) == 16.79


def test_the_quiz_draws_the_papers_methods_first_and_only_class_specific_ones():
    methods = quiz_methods(gc.METHODS)
    assert methods[:3] == ["guided_backprop", "guided_grad_cam", "grad_cam"]
    assert "eigen_cam" not in methods and all(gc.METHODS[m].class_specific for m in methods)
    assert len(methods) == len(set(methods))


def test_a_round_is_fixed_by_the_session_and_covers_both_sources_and_the_papers_methods():
    methods = quiz_methods(gc.METHODS)
    round_ = [draw_question(k, "s1", methods, ["grad_cam", "saliency"]) for k in range(QUESTIONS)]
    assert round_ == [draw_question(k, "s1", methods, ["grad_cam", "saliency"]) for k in range(QUESTIONS)]
    assert round_ != [draw_question(k, "s2", methods, ["grad_cam", "saliency"]) for k in range(QUESTIONS)]
    assert {q.source for q in round_} == {"shapes", "photo"}
    shapes_methods = [q.method for q in round_ if q.source == "shapes"]
    assert shapes_methods[:2] == ["guided_backprop", "guided_grad_cam"] and len(set(shapes_methods)) == len(shapes_methods)
    assert all(q.method in ("grad_cam", "saliency") for q in round_ if q.source == "photo")
    assert {q.shown for q in round_} <= {0, 1}


def test_scores_count_right_answers_per_method():
    assert scores([]) == {}
    assert scores([("grad_cam", True), ("guided_backprop", False), ("grad_cam", False), ("guided_backprop", True)]) == {
        "grad_cam": (1, 2), "guided_backprop": (1, 2)}

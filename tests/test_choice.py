"""The model choice's rule (`bear_classifier.training.choice`) on constructed numbers: what ships, and why."""

from dataclasses import replace

import pytest

from bear_classifier.training import choice
from bear_classifier.training.choice import Candidate

N = 170  # in-domain choosing photos
FOLDERS = {"imagenet_sample": (73, 73), "polar_bears": (5, 5)}  # every not-in-domain photo flagged


def candidate(name: str, right: int, passes: int = 1, share: float = 1.0, zero_shot: bool = False, **more) -> Candidate:
    return Candidate(
        name=name,
        passes=passes,
        share=share,
        zero_shot=zero_shot,
        right=right,
        n=N,
        flagged=more.pop("flagged", 2),
        out_of_domain=more.pop("out_of_domain", FOLDERS),
        guard="shares, 99th percentile",
        **more,
    )


ZS224 = candidate("zero-shot, 224 px", 167, share=0.0, zero_shot=True)
ZS320 = candidate("zero-shot, 320 px + guard pass at 224 px", 168, passes=2, share=0.0, zero_shot=True)
COURSE = candidate("course fine_tune(3)", 150)


def fine_tune(share: float, right: int, **more) -> Candidate:
    return candidate(f"zero-shot fine-tune, WiSE-FT share {share}", right, share=share, **more)


def test_no_fine_tune_ships_below_the_best_zero_shot_reading():
    made = choice.choose([ZS224, ZS320, fine_tune(0.5, 167), fine_tune(1.0, 166), COURSE], "the selection half")
    assert made.chosen is ZS320  # a one-pass candidate one photo below it is not "tied": it would ship below zero-shot
    assert "nothing trained ships because no fine-tune beat the zero-shot reading" in made.reason
    assert "zero-shot fine-tune, WiSE-FT share 0.5, 167/170" in made.reason


def test_a_tie_goes_to_one_pass_then_to_the_higher_share():
    tuned = [fine_tune(0.25, 168), fine_tune(0.5, 169), fine_tune(0.75, 169), fine_tune(1.0, 168)]
    made = choice.choose([ZS224, ZS320, *tuned, COURSE], "validation")
    assert made.chosen is tuned[3]  # 168..169 are within one photo; all one pass; share 1.0 is the highest
    assert "tied within 1 photo" in made.reason and "zero-shot, 320 px" in made.reason
    two_pass_best = replace(ZS320, right=169)
    assert choice.choose([ZS224, two_pass_best, fine_tune(1.0, 169)], "v").chosen.name == fine_tune(1.0, 0).name
    # Never below the best zero-shot reading comes first: one photo fewer is not a tie then.
    assert choice.choose([ZS224, two_pass_best, fine_tune(1.0, 168)], "v").chosen is two_pass_best


def test_more_photos_right_wins_outside_a_tie():
    made = choice.choose([ZS224, ZS320, fine_tune(1.0, 168), replace(COURSE, right=170)], "validation")
    assert made.chosen.name == COURSE.name and made.reason.startswith("170/170 right on validation")


def test_a_tied_candidate_whose_guard_misses_its_targets_is_left_out():
    leaky = fine_tune(1.0, 169, out_of_domain={**FOLDERS, "polar_bears": (4, 5)})  # 80% < 98%
    jumpy = replace(COURSE, right=169, flagged=5)  # 5/170 = 2.9%: over 2% (3.4 photos) by more than one photo
    assert leaky.guard_misses() == ["flags 4/5 of `polar_bears` (at least 98%)"]
    assert jumpy.guard_misses() == ["flags 5/170 in-domain photos (at most 2%, and 1 more)"]
    assert not replace(jumpy, flagged=4).guard_misses()  # within one photo of 2%
    made = choice.choose([ZS224, ZS320, leaky, jumpy], "v")
    assert made.chosen is ZS320  # within one photo of them: the guard decides
    assert "WiSE-FT share 1.0 has 169 but its guard misses its targets (flags 4/5 of `polar_bears`" in made.reason


def test_the_guard_never_costs_more_than_one_photo_of_accuracy():
    leaky = [replace(c, flagged=5) for c in (ZS224, ZS320)]  # 2.9%: both zero-shot readings miss the guard's target
    made = choice.choose([*leaky, fine_tune(1.0, 167), COURSE], "v")
    assert made.chosen is leaky[1] and "no candidate within 1 photo of the best met the guard's" in made.reason
    # Two photos better than every candidate whose guard meets its targets: the accurate one ships, and says so.
    better = fine_tune(1.0, 170, flagged=6)
    made = choice.choose([ZS224, ZS320, better], "v")
    assert made.chosen is better and "no candidate within 1 photo of the best met the guard's" in made.reason
    # The fork of issue 31: on 39 photos one flag is 2.6%, and the course's recipe is 5 photos ahead of the rest.
    small = dict(n=39, out_of_domain={})
    course = replace(COURSE, right=32, flagged=1, **small)
    reading = replace(ZS224, right=24, flagged=0, **small)
    assert choice.choose([reading, replace(fine_tune(1.0, 27), **small), course], "v").chosen is course
    # As it happened there: the fine-tune one photo behind with no flag. One flag on 39 photos is within one photo of
    # the 2% target, so both meet it, and the more accurate course recipe ships (the fine-tune shipped before got
    # 78.4% of the test photos, the course recipe run alone 88.2%).
    tuned = replace(fine_tune(1.0, 31), flagged=0, **small)
    assert choice.choose([reading, tuned, course], "v").chosen is course


def test_when_no_guard_meets_its_targets_the_most_accurate_ships():
    misses = [replace(c, flagged=10) for c in (ZS224, ZS320, fine_tune(1.0, 170))]
    made = choice.choose(misses, "v")
    assert made.chosen is misses[2] and "no candidate within 1 photo of the best met the guard" in made.reason


def test_without_a_zero_shot_reading_the_best_trained_candidate_ships_and_the_reason_says_so():
    probe = candidate("linear probe", 120)
    made = choice.choose([probe, COURSE], "validation")
    assert made.chosen is COURSE and "no zero-shot reading to stay above (a class maps onto no ImageNet" in made.reason


def test_the_first_guard_that_meets_the_targets_is_kept_else_the_nearest():
    strict = replace(ZS224, guard="shares, 99th percentile", flagged=6)
    loose = replace(ZS224, guard="shares, highest", flagged=1)
    looser = replace(ZS224, guard="mass, highest", flagged=0)
    assert choice.best_guard([strict, loose, looser]) is loose
    nearly = replace(loose, flagged=5)  # 2.9% flagged: 0.9 points over
    leaky = replace(looser, out_of_domain={"imagenet_sample": (60, 73)})  # 82%: 16 points under
    assert choice.best_guard([strict, nearly, leaky]) is nearly
    # The shortfall reads the in-domain target as `guard_misses` does, with its one-photo give: 4 of 173 flagged is
    # within it, so the guard that lets 3% of a folder through is nearer than the one that lets 3.1% through.
    within_give = replace(ZS224, flagged=4, out_of_domain={"big folder": (970, 1000)})
    none_flagged = replace(ZS224, flagged=0, out_of_domain={"big folder": (969, 1000)})
    assert choice.best_guard([none_flagged, within_give]) is within_give
    blind = [replace(c, out_of_domain={}) for c in (strict, loose, looser)]  # no photo says what to flag
    assert choice.best_guard(blind) is blind[0]


def test_warnings_name_what_a_student_should_look_at():
    made = choice.choose([ZS224, ZS320, fine_tune(1.0, 160)], "validation")
    mapping = {"cat": ["tabby"], "dog": [f"dog {i}" for i in range(12)], "raccoon": "no ImageNet class has ..."}
    found = choice.warnings(made, mapping, threshold=0.9994, valid_flagged=0.15)
    assert len(found) == 5, found
    assert "WiSE-FT share 1.0 scores below the zero-shot reading on validation (160 against 168 of 170)" in found[0]
    assert "class dog maps onto 12 ImageNet classes" in found[1] and "class raccoon maps onto no ImageNet" in found[2]
    assert "threshold is 0.9994 (above 0.99)" in found[3] and "flags 15.0% of validation" in found[4]
    assert choice.warnings(made, {"cat": ["tabby"]}, 0.9, 0.05) == [found[0]]


def test_a_choice_reads_back_from_its_dict_and_renders_as_a_table():
    made = choice.choose([ZS224, ZS320, fine_tune(1.0, 168)], "the selection half of data/external")
    again = choice.Choice.from_dict(made.to_dict())
    assert again == made and again.chosen == made.chosen
    table = choice.table(made)
    assert "| **zero-shot fine-tune, WiSE-FT share 1.0** (chosen) | 1 | 168/170 (98.8%) | 2/170 (1.2%) |" in table
    assert "100.0% (`imagenet_sample`)" in table


def test_there_is_something_to_choose_from():
    with pytest.raises(ValueError, match="no candidate"):
        choice.choose([], "validation")


def test_two_models_answer_alike_only_with_equal_labels_flags_and_close_probabilities():
    from bear_classifier.model.predictor import Prediction
    from bear_classifier.training.candidates import differences

    one = Prediction("black", {"black": 0.9, "grizzly": 0.05, "teddy": 0.05}, False, 0.1)
    assert differences(one, replace(one, probabilities={"black": 0.90005, "grizzly": 0.04995, "teddy": 0.05})) == []
    assert differences(one, replace(one, label="grizzly")) == ["label black against grizzly"]
    assert differences(one, replace(one, out_of_domain=True)) == ["flagged False against True"]
    moved = replace(one, probabilities={"black": 0.8998, "grizzly": 0.0502, "teddy": 0.05})
    assert differences(one, moved) == ["probabilities differ by 2.00e-04"]


def test_int8_graphs_serve_only_when_no_worse_on_any_figure():
    fp32 = replace(ZS320, name="fp32 graphs")
    assert choice.precision(fp32, replace(fp32, name="int8 graphs"), "the selection half")[0] == "int8"
    assert choice.precision(fp32, replace(fp32, right=fp32.right + 1), "the selection half")[0] == "int8"
    worse = {
        "right": replace(fp32, right=fp32.right - 1),
        "in-domain flags": replace(fp32, flagged=fp32.flagged + 1),
        "a folder's flags": replace(fp32, out_of_domain={**FOLDERS, "polar_bears": (4, 5)}),
    }
    for what, int8 in worse.items():
        ships, reason = choice.precision(fp32, int8, "the selection half")
        assert ships == "fp32", what
        assert "worse on the selection half" in reason, what
    assert "`polar_bears` flagged" in choice.precision(fp32, worse["a folder's flags"], "x")[1]

"""What the page says for a prediction and about the model: close calls, and the article read from the card."""

import dataclasses

import pytest

from bear_classifier import page, serving
from bear_classifier.model import card
from bear_classifier.model.predictor import Prediction


def answer(probabilities: dict[str, float], out_of_domain: bool = False) -> serving.Answer:
    label = max(probabilities, key=probabilities.get)
    return serving.format_answer(Prediction(label, probabilities, out_of_domain, ood_score=0.1))


@pytest.mark.parametrize(
    "probabilities", [{"black": 0.53, "grizzly": 0.46, "teddy": 0.01}, {"black": 0.34, "grizzly": 0.08, "teddy": 0.58}]
)
def test_a_close_call_says_the_model_is_unsure_between_the_two(probabilities):
    first, second = sorted(probabilities, key=probabilities.get, reverse=True)[:2]
    result = answer(probabilities)
    assert result.message.startswith("**Unsure:**")
    assert f"*{first}* ({probabilities[first]:.0%}) or *{second}* ({probabilities[second]:.0%})" in result.message
    assert result.probabilities[0] == f"{first} or {second}?"  # the large headline too
    assert result.details["label"] == first  # programs still get the top class and its probability


def test_a_clear_lead_names_one_class():
    result = answer({"black": 0.2, "grizzly": 0.79, "teddy": 0.01})
    assert result.message == "**grizzly** (79%)."  # the class name alone: never "grizzly bear"
    assert result.probabilities[0] == "grizzly"


def test_out_of_domain_wins_over_a_close_call():
    result = answer({"black": 0.34, "grizzly": 0.33, "teddy": 0.33}, out_of_domain=True)
    assert result.probabilities[0] == "Not a black / grizzly / teddy?"
    assert "Unsure" not in result.message


def test_the_shipped_card_reads_naturally():
    facts = card.read(serving.CARD_PATH)
    text = " ".join(page.article(facts).split())
    assert "nothing trained) with fastai" not in text and "no weight was trained" in text
    # A zero-shot model is not compared with itself ("99.4%, against 99.4% for the pretrained network").
    assert "zero-shot" not in text.split("### How accurate it is")[1].split("###")[0]
    assert f"{facts.external_accuracy:.1%}, against {facts.external_baseline_accuracy:.1%} for the pixel" in text
    assert f"{facts.n_train + facts.n_valid} photos in all" in text and f"{facts.n_valid} were held out" in text


def test_a_trained_model_is_compared_with_the_zero_shot_network():
    facts = dataclasses.replace(
        card.read(serving.CARD_PATH), learning_rate=0.002, recipe="linear probe", external_zero_shot_accuracy=0.976
    )
    text = " ".join(page.article(facts).split())
    assert f"trained further with fastai (linear probe) on {facts.n_train} photos" in text
    assert "against 97.6% for the pretrained network read zero-shot and" in text
    assert "no weight was trained" not in text

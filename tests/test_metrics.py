"""Metrics: SQuAD normalisation, token F1 / EM / contains, label extraction, aggregation."""

import pytest

from advisor import metrics
from advisor.metrics import contains, exact_match, extract_label, normalize_answer, score, token_f1


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an   Apple, a day ", "apple day"),
        ("Theory of the mind", "theory of mind"),
        ("7,000,000 square kilometres (2,70", "7000000 square kilometres 270"),
        ("", ""),
    ],
)
def test_squad_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_token_f1_hand_checked():
    # pred tokens: denver broncos won ; gold: denver broncos -> P=2/3, R=1, F1=0.8
    assert token_f1("Denver Broncos won", ["the Denver Broncos"]) == pytest.approx(0.8)
    assert token_f1("Carolina Panthers", ["Denver Broncos"]) == 0.0
    # max over gold answers
    assert token_f1("Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert token_f1("", ["x"]) == 0.0


def test_exact_match_and_contains():
    assert exact_match("The Broncos.", ["broncos"]) == 1.0
    assert exact_match("Broncos won", ["broncos"]) == 0.0
    assert contains("I think the Denver Broncos won it", ["Denver Broncos"]) == 1.0
    assert contains("Denverite", ["Denver"]) == 0.0  # whole words only


@pytest.mark.parametrize(
    "output, expected",
    [
        ("The review is positive.", "positive"),
        ("negative", "negative"),
        ("NEGATIVE!", "negative"),
        ("It sounds like your pin blocked issue", "pin_blocked"),
        ("top up failed", "top_up_failed"),
        ("top_up_limits", "top_up_limits"),
        ("I can help you with that.", None),
        ("positive, not negative", "positive"),  # first mentioned wins
    ],
)
def test_extract_label(output, expected):
    labels = ["negative", "positive", "pin_blocked", "change_pin", "top_up_failed", "top_up_limits"]
    assert extract_label(output, labels) == expected


def test_extract_prefers_longer_label_at_same_position():
    assert extract_label("card arrival time", ["card", "card_arrival"]) == "card_arrival"


def test_score_classification_generate_counts_unparsed():
    labels = ["negative", "positive"]
    s = score("classification", ["It is positive.", "hmm", "negative"], [["positive"], ["negative"], ["positive"]], labels)
    assert s.per_example["accuracy"] == [1.0, 0.0, 0.0]
    assert s.metrics["accuracy"] == pytest.approx(1 / 3)
    assert s.unparsed_rate == pytest.approx(1 / 3)
    assert s.extracted == ["positive", None, "negative"]


def test_score_classification_constrained_and_macro_f1():
    labels = ["a", "b"]
    s = score("classification", ["a", "a", "b", "b"], [["a"], ["b"], ["b"], ["b"]], labels, constrained=True)
    # a: P=1/2 R=1 F1=2/3 ; b: P=1 R=2/3 F1=0.8 -> macro 0.7333
    assert s.metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert s.metrics["accuracy"] == 0.75
    assert s.unparsed_rate == 0.0


def test_score_qa_keeps_per_example():
    s = score("qa", ["Denver Broncos", "no idea"], [["Denver Broncos"], ["Paris"]])
    assert s.per_example["token_f1"] == [1.0, 0.0]
    assert s.metrics["exact_match"] == 0.5
    assert set(s.metrics) == {"token_f1", "exact_match", "contains"}


def test_score_length_mismatch():
    with pytest.raises(ValueError):
        score("qa", ["a"], [["a"], ["b"]])


def test_registry_directions():
    assert all(m.higher_is_better for m in metrics.METRICS.values())

"""The decline threshold calibrated on the knowledge base, and the one in force."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge import calibration
from knowledge.calibration import CalibrationError, choose_threshold, do_calibrate_threshold
from knowledge.models import BusinessProfile, KnowledgeArticle, ThresholdCalibration
from knowledge.retrieval import retrieve_now
from knowledge.services import do_save_article

pytestmark = pytest.mark.django_db

ARTICLES = {
    "Card delivery": (
        "Your card arrives within 6 business days.",
        ["where is my card", "card not arrived", "how long for a new card"],
    ),
    "Top up": (
        "Top up by bank transfer or card under Accounts > Top up.",
        ["how do i top up", "add money to my account", "top up failed"],
    ),
    "Exchange rates": (
        "We use the Mastercard rate plus 0.5% on weekends.",
        ["what exchange rate do you use", "weekend currency fee", "why was the rate different"],
    ),
}


@pytest.fixture
def articles(tiny_encoder):
    for title, (text, questions) in ARTICLES.items():
        do_save_article(
            KnowledgeArticle(title=title, text=text, example_questions="\n".join(questions))
        )


def test_it_declines_the_most_off_topic_questions_within_the_budget():
    in_scope = np.array([0.50, 0.60, 0.70, 0.80] * 25)  # a quarter at 0.50
    off_topic = np.array([0.30, 0.40, 0.55])

    loose = choose_threshold(in_scope, off_topic, budget=0.0)
    strict = choose_threshold(in_scope, off_topic, budget=0.30)

    # Within no wrong declines it must stay at or below 0.50: it answers the 0.55 question.
    assert loose.threshold <= 0.50 and loose.in_scope_declined == 0.0
    assert loose.off_topic_answered == pytest.approx(1 / 3)
    # Allowed to decline the 0.50s, it declines every off-topic question, in the middle of the
    # candidates that do (0.555 … 0.60).
    assert strict.off_topic_answered == 0.0 and strict.in_scope_declined == 0.25
    assert 0.555 <= strict.threshold <= 0.60
    assert [row[0] for row in strict.curve] == sorted(row[0] for row in strict.curve)


@pytest.mark.django_db(transaction=True)  # retrieve_now closes this thread's connection
def test_it_calibrates_on_the_knowledge_base_and_the_threshold_is_in_force(articles, settings):
    settings.KNOWLEDGE_MIN_SCORE = 0.99
    lines = []

    calibrated = do_calibrate_threshold(log=lines.append)

    stored = ThresholdCalibration.objects.get()
    assert stored == calibrated
    assert (stored.in_scope_count, stored.article_count) == (9, 3)
    assert stored.off_topic_count == len(calibration.load_off_topic().calibration)
    assert len(stored.curve) == len(calibration.CANDIDATES)
    assert lines and lines[0].startswith(f"Decline threshold {stored.threshold:.3f}")
    assert calibration.min_score() == stored.threshold  # not the setting's 0.99
    assert retrieve_now("where is my card").min_score == stored.threshold


def test_staffs_override_wins_and_without_a_calibration_the_setting_is_used(articles, settings):
    settings.KNOWLEDGE_MIN_SCORE = 0.42
    assert calibration.min_score() == 0.42

    do_calibrate_threshold()
    BusinessProfile.objects.create(pk=1, min_score_override=0.77)

    assert calibration.min_score() == 0.77


def test_a_calibration_by_another_encoder_is_not_used(articles, settings, second_tiny_encoder_dir):
    settings.KNOWLEDGE_MIN_SCORE = 0.42
    do_calibrate_threshold()
    settings.KNOWLEDGE_ENCODER = str(second_tiny_encoder_dir)
    calibration.forget_threshold()

    assert calibration.min_score() == 0.42


def test_an_empty_knowledge_base_cannot_be_calibrated(tiny_encoder):
    with pytest.raises(CalibrationError, match="import or embed the knowledge base first"):
        do_calibrate_threshold()
    assert not ThresholdCalibration.objects.exists()


def test_the_off_topic_ceiling_is_the_first_candidate_answering_no_off_topic_question():
    choice = choose_threshold(np.array([0.50, 0.60, 0.70, 0.80]), np.array([0.30, 0.40, 0.55]))

    assert calibration.off_topic_ceiling(choice.curve) == 0.555  # just above the 0.55 question
    assert calibration.off_topic_ceiling([[0.2, 0.0, 0.5], [0.9, 1.0, 0.1]]) is None


@pytest.mark.django_db(transaction=True)  # retrieve_now closes this thread's connection
def test_the_confident_score_is_the_ceiling_never_below_the_threshold(articles, settings):
    assert calibration.confident_score() is None  # no calibration: the model's declines stand

    stored = do_calibrate_threshold()
    ceiling = calibration.off_topic_ceiling(stored.curve)

    assert ceiling is not None
    assert calibration.confident_score() == max(ceiling, stored.threshold)
    BusinessProfile.objects.create(pk=1, min_score_override=0.95)  # staff's stricter threshold
    assert calibration.confident_score() == 0.95
    assert retrieve_now("where is my card").confident_score == 0.95

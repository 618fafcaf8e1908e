"""The decline threshold, calibrated on the knowledge base itself.

Below the threshold (the best article's cosine score) the bot declines instead of answering
(``knowledge.answering``). A threshold calibrated on one knowledge base declines too many
in-scope questions on another (the demo's 0.575 declined 14% of a second one's): how close a
customer's new wording comes to the stored ones depends on the articles. So each knowledge base
is calibrated on its own data, never on customers' questions:

- in scope: every active article's example questions, each scored as if it were not stored (its
  own vector left out, ``ArticleMatrix.scored_search(skip_identical=True)``): a new wording of a
  question the knowledge base answers;
- off topic: the shipped questions no business answers (``off_topic.json``, its "calibration"
  half; the "evaluation" half is for benchmarks only).

The threshold declines as many off-topic questions as it can while declining at most
``MAX_IN_SCOPE_DECLINED`` of the in-scope ones; among equally good thresholds, the middle one
(the largest margin both ways). Each calibration is stored (``ThresholdCalibration``, with both
rates at every candidate for the admin's chart) for the encoder that embedded the articles: a
new encoder needs a new calibration. Staff may override the threshold in the business profile.
The one in force: the profile's override, else the latest calibration for the current encoder,
else KNOWLEDGE_MIN_SCORE.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models.signals import post_save

from knowledge.encoder import current_encoder_name, get_encoder
from knowledge.index import IDENTICAL_COSINE, ArticleMatrix, load_snapshot
from knowledge.models import ThresholdCalibration
from knowledge.polled import PolledValue
from knowledge.profile import current_profile

logger = logging.getLogger(__name__)

OFF_TOPIC_PATH = Path(__file__).with_name("off_topic.json")
MAX_IN_SCOPE_DECLINED = 0.03  # the wrongly-declined budget the threshold may spend
CANDIDATES = np.round(np.arange(0.20, 0.901, 0.005), 3)
SCORE_CHUNK_ROWS = 512  # example questions scored at once (a chunk × all vectors, float32)


class CalibrationError(Exception):
    """The knowledge base cannot be calibrated (nothing embedded, no example questions)."""


@dataclass(frozen=True)
class OffTopicQuestions:
    calibration: tuple[str, ...]
    evaluation: tuple[str, ...]  # never used to calibrate or tune: benchmarks measure on them


@lru_cache(maxsize=1)
def load_off_topic() -> OffTopicQuestions:
    data = json.loads(OFF_TOPIC_PATH.read_text())
    return OffTopicQuestions(tuple(data["calibration"]), tuple(data["evaluation"]))


def min_score() -> float:
    """The decline threshold in force: staff's override, the calibrated one, or the setting."""
    override = current_profile().min_score_override
    if override is not None:
        return override
    calibrated = _calibrated.get()
    return settings.KNOWLEDGE_MIN_SCORE if calibrated is None else calibrated.threshold


def confident_score() -> float | None:
    """The score from which a question is taken to be the knowledge base's own: no off-topic
    question of the calibration came as close to an article (and never below the threshold in
    force). Above it the faithfulness guard sends the article rather than the model's decline
    (``knowledge.faithfulness``). None without a calibration, or when off-topic questions
    reached every candidate: the model's declines stand."""
    calibrated = _calibrated.get()
    if calibrated is None or calibrated.off_topic_ceiling is None:
        return None
    return max(calibrated.off_topic_ceiling, min_score())


def off_topic_ceiling(curve: Sequence[Sequence[float]]) -> float | None:
    """The lowest candidate threshold of a calibration's ``curve`` that answers no off-topic
    question; None when every candidate answers some."""
    return next((float(t) for t, _declined, answered in curve if answered == 0), None)


def in_scope_scores(matrix: ArticleMatrix) -> np.ndarray:
    """The best score of each stored example question, scored as if it were not stored."""
    rows = _example_question_rows(matrix)
    scores = []
    for start in range(0, len(rows), SCORE_CHUNK_ROWS):
        chunk = matrix.vectors[rows[start : start + SCORE_CHUNK_ROWS]]
        cosines = chunk @ matrix.vectors.T
        cosines[cosines >= IDENTICAL_COSINE] = -1.0
        scores.append(np.maximum.reduceat(cosines, matrix.starts, axis=1).max(axis=1))
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def best_scores(matrix: ArticleMatrix, questions: Sequence[str]) -> np.ndarray:
    """The best article score of each of ``questions`` (encoded now)."""
    if not questions:
        return np.zeros(0, dtype=np.float32)
    vectors = get_encoder().encode(list(questions))
    return (vectors @ matrix.vectors.T).max(axis=1)


@dataclass(frozen=True)
class Choice:
    threshold: float
    in_scope_declined: float
    off_topic_answered: float
    curve: list[list[float]]  # [threshold, in-scope declined, off-topic answered] per candidate


def choose_threshold(
    in_scope: np.ndarray, off_topic: np.ndarray, *, budget: float = MAX_IN_SCOPE_DECLINED
) -> Choice:
    """The candidate declining the most off-topic questions within ``budget`` of in-scope ones
    declined; the middle of the best (contiguous) run of candidates on a tie."""
    declined = np.array([(in_scope < t).mean() for t in CANDIDATES])
    answered = np.array([(off_topic >= t).mean() for t in CANDIDATES])
    allowed = np.flatnonzero(declined <= budget)
    if len(allowed) == 0:  # even the lowest candidate declines more: take the lowest
        allowed = np.array([0])
    best = allowed[answered[allowed] == answered[allowed].min()]
    run_end = best[0]
    while run_end + 1 in best:  # the run of equally good candidates starting at the first
        run_end += 1
    index = int((best[0] + run_end) // 2)
    curve = [
        [float(t), round(float(d), 4), round(float(a), 4)]
        for t, d, a in zip(CANDIDATES, declined, answered, strict=True)
    ]
    return Choice(float(CANDIDATES[index]), float(declined[index]), float(answered[index]), curve)


def do_calibrate_threshold(
    *, budget: float = MAX_IN_SCOPE_DECLINED, log: Callable[[str], None] | None = None
) -> ThresholdCalibration:
    """Calibrate the threshold on the active articles embedded by the current encoder, store it
    and return it; CalibrationError when there is nothing to calibrate on."""
    name = current_encoder_name()
    matrix = load_snapshot().for_encoder(name)
    if matrix is None:
        raise CalibrationError(
            "No active article is embedded by the current encoder: import or embed the "
            "knowledge base first."
        )
    in_scope = in_scope_scores(matrix)
    if len(in_scope) == 0:
        raise CalibrationError(
            "The active articles have no example questions to calibrate on: add a few to each "
            "article (customers' wordings of the questions it answers)."
        )
    off_topic_questions = load_off_topic().calibration
    choice = choose_threshold(in_scope, best_scores(matrix, off_topic_questions), budget=budget)
    calibration = ThresholdCalibration.objects.create(
        encoder=name,
        threshold=choice.threshold,
        in_scope_declined=choice.in_scope_declined,
        off_topic_answered=choice.off_topic_answered,
        in_scope_count=len(in_scope),
        off_topic_count=len(off_topic_questions),
        article_count=len(matrix.ids),
        curve=choice.curve,
    )
    if log is not None:
        log(
            f"Decline threshold {choice.threshold:.3f}: declines {choice.in_scope_declined:.1%} "
            f"of {len(in_scope)} example questions (each as a new wording) and answers "
            f"{choice.off_topic_answered:.1%} of {len(off_topic_questions)} off-topic questions."
        )
    return calibration


def recalibrate_after_import(**_signal_arguments: object) -> None:
    """``knowledge_imported``'s receiver: the articles changed, so does what a new wording
    scores. An import that leaves nothing to calibrate on keeps the last calibration."""
    try:
        do_calibrate_threshold(log=logger.info)
    except CalibrationError as error:
        logger.warning("The decline threshold was not calibrated again: %s", error)


def forget_threshold() -> None:
    """This process reads the calibrated threshold again at its next use."""
    _calibrated.forget()


def latest_calibration() -> ThresholdCalibration | None:
    """The calibration in force for the current encoder, if any."""
    return ThresholdCalibration.objects.filter(encoder=current_encoder_name()).first()


def _example_question_rows(matrix: ArticleMatrix) -> np.ndarray:
    """Indices of the example questions' rows: every article's rows but its first (title and
    text)."""
    ends = [*matrix.starts[1:], len(matrix.vectors)]
    return np.array(
        [
            row
            for start, end in zip(matrix.starts, ends, strict=True)
            for row in range(start + 1, end)
        ],
        dtype=np.intp,
    )


@dataclass(frozen=True)
class Calibrated:
    threshold: float
    off_topic_ceiling: float | None


def _read_calibrated() -> Calibrated | None:
    calibration = latest_calibration()
    if calibration is None:
        return None
    return Calibrated(calibration.threshold, off_topic_ceiling(calibration.curve))


_calibrated: PolledValue[Calibrated | None] = PolledValue(_read_calibrated, lambda: None)
post_save.connect(
    _calibrated.forget, sender=ThresholdCalibration, dispatch_uid="forget_calibrated_threshold"
)

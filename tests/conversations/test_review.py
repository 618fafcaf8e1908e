"""Staff review actions: approve, reject, correct — each a conditional UPDATE on staff columns."""

from __future__ import annotations

import pytest

from conversations import review
from conversations.models import Conversation, Feedback, Message

pytestmark = pytest.mark.django_db

Status = Feedback.ReviewStatus


def rate(conversation: Conversation, n: int, rating: int = -1) -> Feedback:
    Message.objects.create(conversation=conversation, role="user", text=f"question {n}")
    reply = Message.objects.create(conversation=conversation, role="assistant", text=f"reply {n}")
    return Feedback.objects.create(
        message=reply,
        conversation=conversation,
        owner_key=f"session:{conversation.session_key}",
        rating=rating,
        reason="wrong" if rating < 0 else "",
        comment=f"comment {n}",
    )


@pytest.fixture
def ratings() -> list[Feedback]:
    conversation = Conversation.objects.create(session_key="s1")
    return [rate(conversation, n) for n in range(3)]


def test_it_approves_the_selection_and_stamps_the_reviewer(ratings, staff_user):
    changed = review.approve_feedback(
        Feedback.objects.filter(pk__in=[ratings[0].pk, ratings[1].pk]), staff_user
    )

    assert changed == 2
    rows = {fb.pk: fb for fb in Feedback.objects.all()}
    for fb in ratings[:2]:
        assert rows[fb.pk].review_status == Status.APPROVED
        assert rows[fb.pk].reviewer == staff_user
        assert rows[fb.pk].reviewed_at is not None
    untouched = rows[ratings[2].pk]
    assert (untouched.review_status, untouched.reviewer, untouched.reviewed_at) == (
        Status.PENDING,
        None,
        None,
    )


def test_it_does_not_count_or_restamp_rows_already_in_that_state(
    ratings, staff_user, django_user_model
):
    other = django_user_model.objects.create_user(username="other", is_staff=True)
    assert review.approve_feedback([ratings[0].pk], staff_user) == 1
    first = Feedback.objects.get(pk=ratings[0].pk)

    assert review.approve_feedback([fb.pk for fb in ratings], other) == 2

    again = Feedback.objects.get(pk=ratings[0].pk)
    assert (again.reviewer, again.reviewed_at) == (staff_user, first.reviewed_at)


def test_it_rejects_approved_feedback(ratings, staff_user):
    review.approve_feedback([ratings[0].pk], staff_user)

    assert review.reject_feedback(Feedback.objects.all(), staff_user) == 3
    assert set(Feedback.objects.values_list("review_status", flat=True)) == {Status.REJECTED}


def test_it_refuses_an_unknown_status(ratings, staff_user):
    with pytest.raises(ValueError, match="unknown review status: 'maybe'"):
        review.set_review_status([ratings[0].pk], "maybe", staff_user)
    with pytest.raises(ValueError, match="unknown review status: 'maybe'"):
        review.set_correction(ratings[0], "better", staff_user, review_status="maybe")
    assert Feedback.objects.get(pk=ratings[0].pk).review_status == Status.PENDING


def test_it_stores_a_correction_with_its_reviewer(ratings, staff_user):
    fb = ratings[0]

    assert review.set_correction(fb, "  The right answer.  ", staff_user) is True

    row = Feedback.objects.get(pk=fb.pk)
    assert row.correction == "The right answer."
    assert row.reviewer == staff_user and row.reviewed_at is not None
    assert row.review_status == Status.PENDING
    assert (fb.correction, fb.reviewer) == ("The right answer.", staff_user)


def test_it_stores_a_correction_and_a_status_together(ratings, staff_user):
    assert review.set_correction(ratings[0], "Better.", staff_user, review_status=Status.APPROVED)

    row = Feedback.objects.get(pk=ratings[0].pk)
    assert (row.correction, row.review_status) == ("Better.", Status.APPROVED)


def test_it_reports_an_unchanged_correction_as_no_change(ratings, staff_user, django_user_model):
    other = django_user_model.objects.create_user(username="other", is_staff=True)
    review.set_correction(ratings[0], "Better.", staff_user)

    assert review.set_correction(ratings[0], "Better.", other) is False
    assert Feedback.objects.get(pk=ratings[0].pk).reviewer == staff_user


def test_it_keeps_a_customers_concurrent_rerating(ratings, staff_user):
    stale = Feedback.objects.get(pk=ratings[0].pk)
    # The customer changes their mind while staff has the form open.
    Feedback.objects.filter(pk=stale.pk).update(rating=1, reason="", comment="actually fine")

    review.set_correction(stale, "Better.", staff_user)

    row = Feedback.objects.get(pk=stale.pk)
    assert (row.rating, row.comment, row.correction) == (1, "actually fine", "Better.")


def test_use_again_lets_the_next_run_learn_from_rows_a_run_used(ratings, staff_user):
    from learning.feedback import usable_feedback
    from learning.models import TrainingRun

    Message.objects.update(finish_reason="stop")  # finished replies: usable
    run = TrainingRun.objects.create(trigger="command", status="succeeded")
    Feedback.objects.filter(pk__in=[ratings[0].pk, ratings[1].pk]).update(used_by_run=run)
    assert set(usable_feedback(require_approval=False)) == {ratings[2]}

    assert review.use_again([ratings[0].pk, ratings[2].pk], staff_user) == 1  # [2] was unused

    assert set(usable_feedback(require_approval=False)) == {ratings[0], ratings[2]}
    assert Feedback.objects.get(pk=ratings[0].pk).reviewer == staff_user

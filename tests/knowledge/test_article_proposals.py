"""Corrections that contradict the article a reply was written from become proposed article
edits; staff accept one (the article is edited, with a revision) or dismiss them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from conversations.article_proposals import do_propose_edits
from conversations.models import Conversation, Feedback, Message
from knowledge.models import ArticleProposal, KnowledgeArticle
from knowledge.proposals import do_accept_proposal, do_dismiss_proposals
from knowledge.services import KnowledgeError
from tests.knowledge.articles import add_all_articles

pytestmark = pytest.mark.django_db

NEW_POLICY = "You can now return items within 60 days of delivery, as long as they're unworn."


@pytest.fixture
def articles(tiny_encoder) -> dict[str, KnowledgeArticle]:
    return add_all_articles()


def rated_reply(
    n: int,
    article: KnowledgeArticle | None,
    *,
    correction: str = NEW_POLICY,
    declined: bool = False,
    status: str = "pending",
) -> Feedback:
    conversation = Conversation.objects.create(session_key=f"s{n}")
    Message.objects.create(conversation=conversation, role="user", text=f"question {n}")
    grounding = (
        [{"id": article.pk, "title": article.title, "text": article.text, "score": 0.8}]
        if article
        else []
    )
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text=article.text if article else "a reply",
        finish_reason="stop",
        grounding=grounding,
        declined=declined,
    )
    return Feedback.objects.create(
        message=reply,
        conversation=conversation,
        owner_key=f"session:s{n}",
        rating=-1,
        reason="wrong",
        correction=correction,
        review_status=status,
    )


def test_corrections_of_one_article_become_one_proposal_each_text(articles, staff_user):
    window = articles["Return window"]
    same = [rated_reply(n, window) for n in range(3)]
    other = rated_reply(3, window, correction="Full refund, no questions asked!")
    skipped = [
        rated_reply(4, window, correction=""),  # a rating without a correction
        rated_reply(5, None),  # not written from an article
        rated_reply(6, window, declined=True),  # the articles did not answer it
        rated_reply(7, window, correction=window.text),  # says what the article says
        rated_reply(8, window, status="rejected"),  # staff rejected it
    ]

    outcome = do_propose_edits(Feedback.objects.all(), by=staff_user)

    assert (outcome.proposed, outcome.supported, outcome.skipped) == (2, 2, 5)
    first, second = ArticleProposal.objects.order_by("id")
    assert (first.article, first.text, first.based_on) == (window, NEW_POLICY, window.text)
    assert set(first.feedback.all()) == set(same) and list(second.feedback.all()) == [other]
    assert first.proposed_by == staff_user and first.status == "pending"
    assert not ArticleProposal.objects.filter(feedback__in=skipped).exists()
    # Proposing again adds nothing new: the same corrections are already in them.
    again = do_propose_edits(Feedback.objects.filter(pk__in=[f.pk for f in same]))
    assert (again.proposed, again.supported) == (0, 3)
    assert ArticleProposal.objects.count() == 2 and first.feedback.count() == 3


def test_accepting_edits_the_article_with_a_revision_once(articles, staff_user):
    window = articles["Return window"]
    rated_reply(0, window)
    do_propose_edits(Feedback.objects.all())
    proposal = ArticleProposal.objects.get()

    article = do_accept_proposal(proposal, by=staff_user)

    assert article.text == NEW_POLICY and article.updated_by == staff_user
    assert article.revisions.get().text == window.text
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("accepted", staff_user)
    with pytest.raises(KnowledgeError, match="already decided"):
        do_accept_proposal(proposal, by=staff_user)
    assert KnowledgeArticle.objects.get(pk=window.pk).revisions.count() == 1


def test_an_accept_whose_save_fails_leaves_the_proposal_pending(articles, monkeypatch):
    rated_reply(0, articles["Return window"])
    do_propose_edits(Feedback.objects.all())
    proposal = ArticleProposal.objects.get()

    def broken(article, *, by=None):
        raise KnowledgeError("saved by someone else")

    monkeypatch.setattr("knowledge.proposals.do_save_article", broken)
    with pytest.raises(KnowledgeError):
        do_accept_proposal(proposal)

    proposal.refresh_from_db()
    assert proposal.status == "pending" and proposal.decided_at is None


def test_dismissing_counts_only_pending_proposals(articles, staff_user):
    window = articles["Return window"]
    rated_reply(0, window)
    rated_reply(1, window, correction="Full refund, no questions asked!")
    do_propose_edits(Feedback.objects.all())
    accepted, other = ArticleProposal.objects.order_by("id")
    do_accept_proposal(accepted)

    assert do_dismiss_proposals(ArticleProposal.objects.all(), by=staff_user) == 1
    other.refresh_from_db()
    assert (other.status, other.decided_by) == ("dismissed", staff_user)


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def test_staff_propose_from_the_feedback_list_and_accept_from_the_proposals(articles, staff_client):
    window = articles["Return window"]
    feedback = [rated_reply(n, window) for n in range(2)]

    proposed = staff_client.post(
        reverse("admin:conversations_feedback_changelist"),
        {"action": "propose_article_edits", "_selected_action": [f.pk for f in feedback]},
        follow=True,
    )

    assert "1 new proposal(s), 1 correction(s) added to pending ones" in proposed.content.decode()
    proposals = reverse("admin:knowledge_articleproposal_changelist")
    listed = staff_client.get(proposals)
    assert [p.text for p in listed.context["cl"].result_list] == [NEW_POLICY]
    proposal = ArticleProposal.objects.get()
    page = staff_client.get(reverse("admin:knowledge_articleproposal_change", args=[proposal.pk]))
    assert page.status_code == 200 and f"#{feedback[0].pk}" in page.content.decode()

    accepted = staff_client.post(
        proposals, {"action": "accept", "_selected_action": [proposal.pk]}, follow=True
    )

    assert "1 article(s) edited from the proposals." in accepted.content.decode()
    assert KnowledgeArticle.objects.get(pk=window.pk).text == NEW_POLICY


def test_two_proposals_for_one_article_are_not_accepted_together(articles, staff_client):
    window = articles["Return window"]
    rated_reply(0, window)
    rated_reply(1, window, correction="Full refund, no questions asked!")
    do_propose_edits(Feedback.objects.all())

    both = list(ArticleProposal.objects.values_list("pk", flat=True))
    response = staff_client.post(
        reverse("admin:knowledge_articleproposal_changelist"),
        {"action": "accept", "_selected_action": both},
        follow=True,
    )

    assert "Choose one proposal for “Return window”" in response.content.decode()
    assert KnowledgeArticle.objects.get(pk=window.pk).text == window.text


def test_staff_without_the_change_permission_cannot_accept(articles, django_user_model):
    rated_reply(0, articles["Return window"])
    do_propose_edits(Feedback.objects.all())
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_articleproposal"))
    client = Client()
    client.force_login(viewer)

    listed = client.get(reverse("admin:knowledge_articleproposal_changelist"))

    assert listed.status_code == 200
    assert listed.context["action_form"] is None  # neither accept nor dismiss is offered
    proposal = ArticleProposal.objects.get()
    client.post(
        reverse("admin:knowledge_articleproposal_changelist"),
        {"action": "accept", "_selected_action": [proposal.pk]},
    )
    proposal.refresh_from_db()
    assert proposal.status == "pending"
    assert KnowledgeArticle.objects.get(title="Return window").text == proposal.based_on

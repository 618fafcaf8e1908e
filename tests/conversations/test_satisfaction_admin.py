"""The satisfaction survey, the handoff and the agents' answers in the staff admin: the weekly
numbers (`conversations.satisfaction_stats`), the trend page, the Satisfaction list, and what the
conversation and feedback pages show of handoffs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations import agent_answers, handoff
from conversations.models import Conversation, Feedback, Message, Satisfaction
from conversations.satisfaction_stats import NO_VERSION, satisfaction_trends, week_start
from learning.models import ModelVersion
from tests.agents import allow_answering

pytestmark = pytest.mark.django_db

TRENDS = reverse("admin:conversations_satisfaction_trends")
SATISFACTION_LIST = reverse("admin:conversations_satisfaction_changelist")
CONVERSATION_LIST = reverse("admin:conversations_conversation_changelist")
FEEDBACK_LIST = reverse("admin:conversations_feedback_changelist")


def this_week() -> dt.datetime:
    """Tuesday noon of the current week (possibly later today): always in the current week."""
    monday = week_start(timezone.now())
    return timezone.make_aware(dt.datetime.combine(monday + dt.timedelta(days=1), dt.time(12)))


def version(name: str) -> ModelVersion:
    return ModelVersion.objects.create(name=name, checkpoint_path=f"/nowhere/{name}")


def conversation(when: dt.datetime, **fields) -> Conversation:
    made = Conversation.objects.create(session_key="s", **fields)
    Conversation.objects.filter(pk=made.pk).update(created_at=when)
    return made


def reply(conv: Conversation, text: str, model: ModelVersion | None, **fields) -> Message:
    Message.objects.create(conversation=conv, role="user", text=f"question before {text}")
    return Message.objects.create(
        conversation=conv,
        role="assistant",
        text=text,
        model_version=model,
        finish_reason="stop",
        **fields,
    )


def rate(message: Message, rating: int, when: dt.datetime, owner: str = "session:s") -> Feedback:
    made = Feedback.objects.create(
        message=message,
        conversation=message.conversation,
        owner_key=owner,
        rating=rating,
    )
    Feedback.objects.filter(pk=made.pk).update(created_at=when)
    return made


def answer(conv: Conversation, score: int, when: dt.datetime, model=None, **fields):
    made = Satisfaction.objects.create(
        conversation=conv, score=score, model_version=model, **fields
    )
    Satisfaction.objects.filter(pk=made.pk).update(created_at=when)
    return made


@pytest.fixture
def agent(django_user_model):
    return allow_answering(
        django_user_model.objects.create_user(
            username="sam.agent", first_name="Sam", password="x", is_staff=True
        )
    )


def handed_to_agent(agent, when: dt.datetime, question: str = "Is my order 123 lost?"):
    """question → bot decline → handoff → claim → agent reply, recorded as an agent answer."""
    conv = conversation(when)
    Message.objects.create(conversation=conv, role="user", text=question)
    Message.objects.create(
        conversation=conv,
        role="assistant",
        text="Sorry, I can't help with that.",
        declined=True,
        finish_reason="stop",
    )
    assert handoff.do_request_handoff(conv.pk, Conversation.HandoffReason.DECLINES)
    handoff.do_claim(conv.pk, agent.pk)
    sent = handoff.do_post_agent_message(conv.pk, agent.pk, "It left the depot today.")
    feedback = agent_answers.do_record_agent_answer(sent.message_id)
    assert feedback is not None
    Feedback.objects.filter(pk=feedback.pk).update(created_at=when)
    return conv, feedback


@pytest.fixture
def weeks(agent):
    """Two weeks of answers, ratings and conversations, one agent's answer, and an old row.

    Current week: 5 conversations (one handed off by handoff_at, one only by an agent's
    message, one through the whole handoff), v2 answers 5 and 3, a "no version" answer 4,
    v2 thumbs 3 up / 1 down, and the agent's answer (rated up, not a rating).
    Last week: 2 conversations, none handed off, v1 answer 2, v1 thumbs 1 up / 1 down.
    """
    now = this_week()
    last = now - dt.timedelta(days=7)
    v1, v2 = version("v1"), version("v2")
    c1, c2 = conversation(now), conversation(now, handed_off_at=now)
    c3 = conversation(now)
    Message.objects.create(conversation=c3, role="agent", text="Hi, Sam here.", author=agent)
    c4, agent_answer = handed_to_agent(agent, now)
    c5 = conversation(now)
    answer(c1, 5, now, v2)
    answer(c2, 3, now, v2, handed_off=True)
    answer(c5, 4, now)
    for n, rating in enumerate([1, 1, 1, -1]):
        rate(reply(c1, f"v2 reply {n}", v2), rating, now)
    old1, old2 = conversation(last), conversation(last)
    answer(old1, 2, last, v1)
    rate(reply(old1, "v1 reply a", v1), 1, last)
    rate(reply(old2, "v1 reply b", v1), -1, last)
    ancient = conversation(now - dt.timedelta(weeks=20), handed_off_at=now)
    answer(ancient, 1, now - dt.timedelta(weeks=20), v1)
    return {
        "now": now,
        "last": last,
        "v1": v1,
        "v2": v2,
        "handed": c2,
        "agent_only": c3,
        "full": c4,
        "plain": c1,
        "agent_answer": agent_answer,
    }


# --- the numbers ------------------------------------------------------------------------------


def test_it_counts_answers_and_mean_score_per_week_and_version(weeks):
    trends = satisfaction_trends(4)

    this, last = week_start(weeks["now"]), week_start(weeks["last"])
    assert trends.weeks[-2:] == [last, this] and len(trends.weeks) == 4
    assert trends.versions == ["v1", "v2", NO_VERSION]
    v2 = trends.cell(this, "v2")
    assert (v2.answers, v2.mean_score) == (2, 4.0)
    assert (trends.cell(this, NO_VERSION).answers, trends.cell(this, NO_VERSION).mean_score) == (
        1,
        4.0,
    )
    v1 = trends.cell(last, "v1")
    assert (v1.answers, v1.mean_score) == (1, 2.0)
    assert trends.cell(this, "v1").answers == 0  # nothing of v1 this week


def test_it_counts_only_customers_ratings_in_the_thumbs_up_share(weeks):
    trends = satisfaction_trends(4)

    this, last = week_start(weeks["now"]), week_start(weeks["last"])
    v2 = trends.cell(this, "v2")
    assert (v2.thumbs_up, v2.rated, v2.thumbs_up_share) == (3, 4, 0.75)
    v1 = trends.cell(last, "v1")
    assert (v1.thumbs_up, v1.rated, v1.thumbs_up_share) == (1, 2, 0.5)
    # The agent's answer (rated up, on a message of no version) is not a rating.
    assert trends.cell(this, NO_VERSION).rated == 0


def test_it_shares_conversations_handed_to_a_person_per_week(weeks):
    rows = {row.week: row for row in satisfaction_trends(4).handoff_rows()}

    this = rows[week_start(weeks["now"])]
    # handed_off_at, an agent message alone, and the full handoff; c1 and c5 were not.
    assert (this.conversations, this.handed_off) == (5, 3)
    assert this.share == pytest.approx(0.6)
    last = rows[week_start(weeks["last"])]
    assert (last.conversations, last.handed_off, last.share) == (2, 0, 0.0)
    empty = rows[min(rows)]
    assert (empty.conversations, empty.share) == (0, None)


def test_it_keeps_rows_outside_the_window_out(weeks):
    short = satisfaction_trends(12)
    long = satisfaction_trends(26)
    old_week = week_start(weeks["now"] - dt.timedelta(weeks=20))

    assert old_week not in short.weeks
    assert sum(c.answers for c in short.cells.values()) == 4
    assert long.cell(old_week, "v1").answers == 1
    assert sum(c.answers for c in long.cells.values()) == 5
    assert long.handoffs[old_week].handed_off == 1


def test_it_aggregates_in_three_queries_whatever_the_rows(weeks, django_assert_num_queries):
    for n in range(10):
        conv = conversation(weeks["now"])
        answer(conv, 1 + n % 5, weeks["now"], weeks["v1"])
        rate(reply(conv, f"extra {n}", weeks["v2"]), 1, weeks["now"])

    with django_assert_num_queries(3):
        trends = satisfaction_trends(8)
    assert trends.cell(week_start(weeks["now"]), "v1").answers == 10


# --- the trend page ---------------------------------------------------------------------------


def test_it_draws_and_tabulates_the_weekly_trends_for_staff(admin_client, weeks):
    response = admin_client.get(TRENDS, {"weeks": "4"})

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<svg role="img"') == 3
    for text in [
        "Mean satisfaction (1 to 5) per model version",
        "Thumbs-up share of customers&#x27; ratings per model version",
        "Share of conversations handed to a person",
        "4.00 / 5",  # v2 this week
        "2.00 / 5",  # v1 last week
        "75% (3 of 4)",
        "50% (1 of 2)",
        "60%",  # handed off this week
        NO_VERSION,
        '<strong aria-current="page">4 weeks</strong>',
    ]:
        assert text in page, text
    this = week_start(weeks["now"]).isoformat()
    assert f'<th scope="row">{this}</th>' in page
    # The pictures say their numbers to screen readers too.
    assert "v2: " in page and "n=2" in page


def test_it_falls_back_to_twelve_weeks_on_a_bad_weeks_parameter(admin_client, weeks):
    for bad in ["many", "-3", "0"]:
        response = admin_client.get(TRENDS, {"weeks": bad})
        assert response.status_code == 200
        expected = 1 if bad in {"-3", "0"} else 12
        assert len(response.context["trends"].weeks) == expected, bad


def test_it_shows_the_trend_page_in_a_fixed_number_of_queries(
    admin_client, weeks, django_assert_max_num_queries
):
    with CaptureQueriesContext(connection) as few:
        admin_client.get(TRENDS)
    for n in range(15):
        conv = conversation(weeks["last"], handed_off_at=weeks["last"])
        answer(conv, 4, weeks["last"], version(f"extra-{n}"))

    with django_assert_max_num_queries(len(few)):
        page = admin_client.get(TRENDS).content.decode()
    assert "extra-14" in page


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_it_sends_everyone_but_staff_to_the_login_page(client, weeks, customer_user, who):
    if who == "customer":
        client.force_login(customer_user)
    answer_url = reverse(
        "admin:conversations_satisfaction_change",
        args=[Satisfaction.objects.first().pk],
    )

    for url in [TRENDS, SATISFACTION_LIST, answer_url]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login") + "?next="), url


def test_it_refuses_the_trend_page_to_staff_who_may_not_view_answers(weeks, django_user_model):
    staff = django_user_model.objects.create_user("helper", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)

    assert client.get(TRENDS).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_satisfaction"))
    assert client.get(TRENDS).status_code == 200


# --- the Satisfaction list --------------------------------------------------------------------


def listed(client, url: str, **params) -> set:
    response = client.get(url, params)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_it_lists_answers_with_conversation_score_comment_and_version(admin_client, weeks):
    Satisfaction.objects.filter(conversation=weeks["plain"]).update(comment="Quick <and> kind")

    response = admin_client.get(SATISFACTION_LIST)

    page = response.content.decode()
    assert response.status_code == 200
    conversation_url = reverse("admin:conversations_conversation_change", args=[weeks["plain"].pk])
    assert f'<a href="{conversation_url}">{str(weeks["plain"].pk)[:8]}</a>' in page
    for text in ["5/5", "Quick &lt;and&gt; kind", "v2", TRENDS]:
        assert text in page, text
    assert "Add satisfaction answer" not in page


@pytest.mark.parametrize(
    ("params", "scores"),
    [
        ({"score": "5"}, [5]),
        ({"score": "3"}, [3]),
        ({"handed_off__exact": "1"}, [3]),
        ({"handed_off__exact": "0"}, [1, 2, 4, 5]),
    ],
)
def test_it_filters_answers(admin_client, weeks, params, scores):
    found = listed(admin_client, SATISFACTION_LIST, **params)

    assert sorted(Satisfaction.objects.filter(pk__in=found).values_list("score", flat=True)) == (
        scores
    )


def test_it_filters_answers_by_model_version(admin_client, weeks):
    found = listed(admin_client, SATISFACTION_LIST, model_version__id__exact=weeks["v2"].pk)

    assert sorted(Satisfaction.objects.filter(pk__in=found).values_list("score", flat=True)) == [
        3,
        5,
    ]


def test_it_never_adds_edits_or_deletes_an_answer(admin_client, weeks):
    row = Satisfaction.objects.get(conversation=weeks["plain"])

    assert admin_client.get(reverse("admin:conversations_satisfaction_add")).status_code == 403
    delete = reverse("admin:conversations_satisfaction_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    change = reverse("admin:conversations_satisfaction_change", args=[row.pk])
    assert 'name="score"' not in admin_client.get(change).content.decode()
    admin_client.post(change, {"score": "1", "comment": "tampered"})

    row.refresh_from_db()
    assert (row.score, row.comment) == (5, "")


# --- conversations and feedback ---------------------------------------------------------------


def test_it_lists_conversations_with_status_agent_reason_and_score(admin_client, weeks):
    response = admin_client.get(CONVERSATION_LIST)

    page = response.content.decode()
    rows = {c.pk: c for c in response.context["cl"].result_list}
    assert rows[weeks["full"].pk].status == "with_agent"
    assert rows[weeks["plain"].pk].csat == 5
    for text in ["With a person", "Waiting for a person", "Sam", "5/5", "3/5"]:
        assert text in page, text
    assert "The bot declined twice in a row" in page


def test_it_filters_conversations_by_status_and_handoff_reason(admin_client, weeks):
    Conversation.objects.filter(pk=weeks["handed"].pk).update(
        status="waiting_for_agent", handoff_reason="asked"
    )

    assert listed(admin_client, CONVERSATION_LIST, status__exact="with_agent") == {weeks["full"].pk}
    assert listed(admin_client, CONVERSATION_LIST, status__exact="waiting_for_agent") == {
        weeks["handed"].pk
    }
    assert listed(admin_client, CONVERSATION_LIST, handoff_reason__exact="declines") == {
        weeks["full"].pk
    }
    assert listed(admin_client, CONVERSATION_LIST, handoff_reason__exact="asked") == {
        weeks["handed"].pk
    }


def test_it_names_the_agent_in_the_transcript(admin_client, weeks):
    url = reverse("admin:conversations_conversation_change", args=[weeks["full"].pk])

    page = admin_client.get(url).content.decode()

    assert "Agent (Sam)" in page and "It left the depot today." in page
    assert "training example (pending)" in page  # the agent's answer, not a thumb
    assert "The bot declined twice in a row" in page and "Sam" in page


def test_it_counts_only_customers_thumbs_on_the_conversation_list(admin_client, weeks, agent):
    rows = {c.pk: c for c in admin_client.get(CONVERSATION_LIST).context["cl"].result_list}

    assert (rows[weeks["full"].pk].n_up, rows[weeks["full"].pk].n_down) == (0, 0)
    assert (rows[weeks["plain"].pk].n_up, rows[weeks["plain"].pk].n_down) == (3, 1)


def test_it_filters_feedback_by_source(admin_client, weeks):
    agents = listed(admin_client, FEEDBACK_LIST, source="agent")
    customers = listed(admin_client, FEEDBACK_LIST, source="customer")

    assert agents == {weeks["agent_answer"].pk}
    assert len(customers) == 6 and weeks["agent_answer"].pk not in customers
    assert agents | customers == set(Feedback.objects.values_list("pk", flat=True))


def test_it_shows_an_agent_answer_with_its_question_and_agent(admin_client, weeks):
    row = weeks["agent_answer"]
    page = admin_client.get(FEEDBACK_LIST, {"source": "agent"}).content.decode()

    assert "Is my order 123 lost?" in page and "It left the depot today." in page
    assert "Agent (Sam)" in page

    detail = admin_client.get(
        reverse("admin:conversations_feedback_change", args=[row.pk])
    ).content.decode()
    assert "The agent&#x27;s answer (a training example)" in detail
    assert "Is my order 123 lost?" in detail and "Sam" in detail
    assert "Sorry, I can&#x27;t help" not in detail  # the decline is not the question


def test_it_approves_and_rejects_agent_answers_like_ratings(admin_client, admin_user, weeks):
    row = weeks["agent_answer"]

    admin_client.post(
        FEEDBACK_LIST, {"action": "approve_for_training", "_selected_action": [row.pk]}
    )
    row.refresh_from_db()
    assert (row.review_status, row.reviewer) == ("approved", admin_user)

    admin_client.post(FEEDBACK_LIST, {"action": "reject", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.review_status == "rejected"


def test_the_daily_chart_counts_customers_ratings_only(admin_client, weeks):
    Feedback.objects.filter(source="customer").update(created_at=weeks["now"])
    Feedback.objects.filter(pk=weeks["agent_answer"].pk).update(created_at=weeks["now"])

    page = admin_client.get(FEEDBACK_LIST).content.decode()

    # 4 of 6 customers' thumbs are up; with the agent's answer it would be 5 of 7.
    assert "67% (4 of 6)" in page
    assert "(5 of 7)" not in page

"""The learning loop in the admin: retrain, runs, promote/roll back, golden set, export."""

from __future__ import annotations

import json
import threading

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import Conversation, Feedback, Message
from learning import runs
from learning.models import GoldenExample, ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db

RETRAIN = reverse("admin:learning_trainingrun_retrain")
RUNS = reverse("admin:learning_trainingrun_changelist")
VERSIONS = reverse("admin:learning_modelversion_changelist")
FEEDBACK_LIST = reverse("admin:conversations_feedback_changelist")
VIEW_PERMISSIONS = ["view_trainingrun", "view_modelversion", "view_goldenexample", "view_feedback"]


def staff(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def operator(django_user_model):
    return staff(django_user_model, "operator", "operate_learning", *VIEW_PERMISSIONS)


@pytest.fixture
def onlooker(django_user_model):
    """Staff who may look at everything but not operate the loop."""
    return staff(django_user_model, "onlooker", *VIEW_PERMISSIONS)


@pytest.fixture
def enqueued(monkeypatch):
    """What would be sent to Celery, instead of sending it."""
    sent: list[int] = []
    monkeypatch.setattr(runs, "enqueue_training_run", sent.append)
    return sent


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def version(name: str, status: str = ModelVersion.Status.READY, **kw) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, checkpoint_path=f"/nowhere/{name}", status=status, **kw
    )


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def lineage(operator):
    """base (retired, was active) → v2 (active) → v3 (ready) and v4 (rejected by the gate)."""
    base = version(
        "base",
        ModelVersion.Status.RETIRED,
        metrics={"retention_perplexity": 12.0, "heldout_margin": 0.1},
    )
    ModelVersion.objects.filter(pk=base.pk).update(activated_at="2026-01-01T00:00:00Z")
    v2 = version(
        "v2",
        ModelVersion.Status.ACTIVE,
        parent=base,
        anchor=base,
        metrics={"retention_perplexity": 12.3, "heldout_margin": 0.4, "golden_fact_accuracy": 0.75},
    )
    ModelVersion.objects.filter(pk=v2.pk).update(activated_at="2026-02-01T00:00:00Z")
    version("v3", parent=v2, anchor=base, metrics={"retention_perplexity": 12.4})
    v4 = version("v4", ModelVersion.Status.REJECTED, parent=v2, anchor=base)
    TrainingRun.objects.create(
        trigger="schedule",
        status=TrainingRun.Status.REJECTED,
        result_version=v4,
        gate_passed=False,
        gate_reasons=["FAIL retention: perplexity 12.300 → 19.000 (bound 12.915, +5%)"],
    )
    return {name: ModelVersion.objects.get(name=name) for name in ["base", "v2", "v3", "v4"]}


# --- Retrain now ------------------------------------------------------------------------------


def test_it_shows_the_retrain_button_to_operators_only(operator, onlooker):
    page = client_for(operator).get(RUNS).content.decode()
    assert f'action="{RETRAIN}"' in page and "Retrain now" in page
    assert 'name="csrfmiddlewaretoken"' in page

    page = client_for(onlooker).get(RUNS).content.decode()
    assert "Retrain now" not in page and RETRAIN not in page


def test_it_queues_exactly_one_run_and_shows_it(
    operator, enqueued, django_capture_on_commit_callbacks
):
    client = client_for(operator)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(RETRAIN)

    run = TrainingRun.objects.get()
    assert (run.status, run.trigger, run.triggered_by) == ("queued", "operator", operator)
    assert enqueued == [run.pk]
    change_url = reverse("admin:learning_trainingrun_change", args=[run.pk])
    assert response.status_code == 302 and response["Location"] == change_url
    followed = client.get(change_url)
    assert f"Run #{run.pk} queued." in page_messages(followed)
    assert LogEntry.objects.filter(object_id=str(run.pk), user=operator).exists()

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(RETRAIN, follow=True)

    assert TrainingRun.objects.count() == 1 and enqueued == [run.pk]
    assert f"Run #{run.pk} is already queued." in page_messages(again)


def test_it_points_at_the_running_run_instead_of_queuing_another(operator, enqueued):
    running = TrainingRun.objects.create(trigger="schedule", status=TrainingRun.Status.RUNNING)

    response = client_for(operator).post(RETRAIN, follow=True)

    assert TrainingRun.objects.count() == 1 and enqueued == []
    assert response.redirect_chain[-1][0] == reverse(
        "admin:learning_trainingrun_change", args=[running.pk]
    )
    assert f"Run #{running.pk} is already running." in page_messages(response)


def test_it_refuses_retrain_to_staff_without_the_permission(onlooker, enqueued):
    assert client_for(onlooker).post(RETRAIN).status_code == 403
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_it_sends_non_staff_to_the_login_page(client, customer_user, enqueued, who):
    if who == "customer":
        customer_user.user_permissions.add(Permission.objects.get(codename="operate_learning"))
        client.force_login(customer_user)

    response = client.post(RETRAIN)

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert not TrainingRun.objects.exists()


def test_it_accepts_only_post_for_retrain(operator, enqueued):
    assert client_for(operator).get(RETRAIN).status_code == 405
    assert not TrainingRun.objects.exists()


def test_it_checks_the_csrf_token_on_retrain(operator, enqueued):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    assert client.post(RETRAIN).status_code == 403
    assert not TrainingRun.objects.exists()

    token = client.get(RUNS).context["csrf_token"]
    assert client.post(RETRAIN, {"csrfmiddlewaretoken": str(token)}).status_code == 302
    assert TrainingRun.objects.count() == 1


# --- Training run pages -----------------------------------------------------------------------


def finished_run(lineage) -> TrainingRun:
    return TrainingRun.objects.create(
        trigger="operator",
        status=TrainingRun.Status.SUCCEEDED,
        parent=lineage["base"],
        anchor=lineage["base"],
        result_version=lineage["v2"],
        hyperparameters={"lr": 0.0003, "anchor_strength": 10.0, "regularizer": "l2sp"},
        example_counts={"feedback": 60, "train": 50, "heldout": 10},
        step=30,
        total_steps=30,
        loss_history=[2.5, 2.1, 1.7, 1.4, 1.2],
        metrics_before={"heldout_margin": 0.1, "retention_perplexity": 12.0},
        metrics_after={"heldout_margin": 0.4, "retention_perplexity": 12.3, "train_seconds": 41.5},
        gate_passed=True,
        gate_reasons=["PASS feedback: held-out margin 0.100 → 0.400"],
        started_at="2026-03-01T10:00:00Z",
        finished_at="2026-03-01T10:01:05Z",
    )


def test_it_shows_a_finished_run_with_its_loss_curve_metrics_and_gate(operator, lineage):
    run = finished_run(lineage)
    url = reverse("admin:learning_trainingrun_change", args=[run.pk])

    page = client_for(operator).get(url).content.decode()

    assert "<svg" in page and "Training loss over 5 points, from 2.500 to 1.200" in page
    assert "<polyline" in page
    for text in [
        "parent (before)",
        "candidate (after)",
        "Held-out feedback margin (higher is better)",
        "+0.3",  # the margin's change
        "Retention perplexity (lower is better)",
        "PASS feedback: held-out margin 0.100 → 0.400",
        "anchor_strength",
        "l2sp",
        "30 / 30 steps (100%)",
        "1 min 5 s",
        "Promoted",
    ]:
        assert text in page, text
    assert "run-progress.js" not in page  # nothing to follow once it ended
    assert 'name="status"' not in page  # read-only


def test_it_follows_a_running_runs_progress(operator):
    run = TrainingRun.objects.create(
        trigger="operator",
        status=TrainingRun.Status.RUNNING,
        step=12,
        total_steps=40,
        loss_history=[2.0, 1.5],
        started_at="2026-03-01T10:00:00Z",
    )

    page = (
        client_for(operator)
        .get(reverse("admin:learning_trainingrun_change", args=[run.pk]))
        .content.decode()
    )

    assert f'data-poll-url="{reverse("learning:training-run", args=[run.pk])}"' in page
    assert "admin-extra/run-progress.js" in page
    assert '<progress max="40" value="12"' in page and "12 / 40 steps (30%)" in page
    assert "loss 1.5" in page and 'aria-live="polite"' in page


def test_it_shows_a_failed_runs_error(operator):
    run = TrainingRun.objects.create(
        trigger="schedule", status=TrainingRun.Status.FAILED, error="LearningError: No usable <b>"
    )

    page = (
        client_for(operator)
        .get(reverse("admin:learning_trainingrun_change", args=[run.pk]))
        .content.decode()
    )

    assert "LearningError: No usable &lt;b&gt;" in page


def test_it_lists_runs_with_progress_counts_gate_and_version(operator, lineage):
    run = finished_run(lineage)
    TrainingRun.objects.create(trigger="schedule", status="running", step=5, total_steps=20)

    response = client_for(operator).get(RUNS)

    page = response.content.decode()
    assert {r.pk for r in response.context["cl"].result_list} >= {run.pk}
    for text in ["50 train / 10 held out", "✔ passed", "✘ failed", "v2", "5 / 20 steps (25%)"]:
        assert text in page, text


def test_it_never_edits_or_deletes_a_run(admin_client, lineage):
    run = finished_run(lineage)

    assert (
        admin_client.post(
            reverse("admin:learning_trainingrun_delete", args=[run.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    admin_client.post(
        reverse("admin:learning_trainingrun_change", args=[run.pk]), {"status": "failed"}
    )
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.Status.SUCCEEDED


# --- Promote and roll back --------------------------------------------------------------------


def test_it_promotes_a_version_recording_who_and_why(operator, lineage):
    client = client_for(operator)
    url = reverse("admin:learning_modelversion_promote", args=[lineage["v3"].pk])
    change_page = client.get(
        reverse("admin:learning_modelversion_change", args=[lineage["v3"].pk])
    ).content.decode()
    assert f'href="{url}"' in change_page and ">Promote<" in change_page

    confirm = client.get(url).content.decode()
    assert (
        "Promote v3?" in confirm
        and 'for="id_note"' in confirm
        and "v2</strong> is retired" in confirm
    )
    assert client.post(url, {"note": "  "}).status_code == 200  # a reason is required
    assert ModelVersion.objects.get(pk=lineage["v3"].pk).status == ModelVersion.Status.READY

    response = client.post(url, {"note": "better refund answers"}, follow=True)

    v3 = ModelVersion.objects.get(pk=lineage["v3"].pk)
    assert (v3.status, v3.activated_by, v3.activation_note) == (
        ModelVersion.Status.ACTIVE,
        operator,
        "better refund answers",
    )
    assert ModelVersion.objects.get(pk=lineage["v2"].pk).status == ModelVersion.Status.RETIRED
    assert any("Promoted v3" in m for m in page_messages(response))
    entry = LogEntry.objects.get(object_id=str(v3.pk))
    assert entry.user == operator and "better refund answers" in entry.get_change_message()


def test_it_rolls_back_to_an_earlier_version(operator, lineage):
    client = client_for(operator)
    base = lineage["base"]
    url = reverse("admin:learning_modelversion_rollback", args=[base.pk])
    change_page = client.get(
        reverse("admin:learning_modelversion_change", args=[base.pk])
    ).content.decode()
    assert f'href="{url}"' in change_page and "Roll back to this version" in change_page

    client.post(url, {"note": "v2 promises refunds we do not give"})

    base.refresh_from_db()
    assert (base.status, base.activated_by) == (ModelVersion.Status.ACTIVE, operator)
    assert base.activation_note == "Rolled back to base: v2 promises refunds we do not give"
    assert ModelVersion.objects.get(pk=lineage["v2"].pk).status == ModelVersion.Status.RETIRED


def test_it_warns_before_force_promoting_a_rejected_version(operator, lineage):
    url = reverse("admin:learning_modelversion_promote", args=[lineage["v4"].pk])

    page = client_for(operator).get(url).content.decode()

    assert "The evaluation gate rejected this version." in page
    assert "FAIL retention: perplexity 12.300 → 19.000" in page


def test_it_offers_nothing_for_the_active_version(operator, lineage):
    client = client_for(operator)
    active = lineage["v2"]

    page = client.get(reverse("admin:learning_modelversion_change", args=[active.pk])).content
    response = client.post(
        reverse("admin:learning_modelversion_promote", args=[active.pk]), {"note": "again"}
    )

    assert b"/promote/" not in page and b"/rollback/" not in page
    assert response.status_code == 302
    assert ModelVersion.objects.get(pk=active.pk).activation_note == ""


@pytest.mark.parametrize("kind", ["promote", "rollback"])
def test_it_refuses_promote_and_rollback_without_the_permission(onlooker, lineage, kind):
    client = client_for(onlooker)
    target = lineage["v3" if kind == "promote" else "base"]
    url = reverse(f"admin:learning_modelversion_{kind}", args=[target.pk])

    page = client.get(reverse("admin:learning_modelversion_change", args=[target.pk])).content
    assert url.encode() not in page
    assert client.get(url).status_code == 403
    assert client.post(url, {"note": "sneaky"}).status_code == 403

    assert ModelVersion.objects.active().get().name == "v2"


def test_it_shows_version_metrics_readably_and_charts_them(operator, lineage):
    conversation = Conversation.objects.create(session_key="s")
    for n, rating in enumerate([1, 1, -1]):
        Message.objects.create(conversation=conversation, role="user", text=f"q{n}")
        reply = Message.objects.create(
            conversation=conversation,
            role="assistant",
            text=f"r{n}",
            model_version=lineage["v2"],
            finish_reason="stop",
        )
        Feedback.objects.create(
            message=reply, conversation=conversation, owner_key="session:s", rating=rating
        )
    client = client_for(operator)

    detail = client.get(
        reverse("admin:learning_modelversion_change", args=[lineage["v2"].pk])
    ).content.decode()
    listing = client.get(VERSIONS).content.decode()

    assert "Golden set: answers with the required facts" in detail and "75%" in detail
    assert "67% of 3" in detail and "67% of 3" in listing
    assert "Thumbs-up share per model version" in listing
    assert "Retention perplexity" in listing and "base 12, v2 12.3, v3 12.4" in listing


# --- Golden set -------------------------------------------------------------------------------


def test_it_adds_and_edits_golden_examples(admin_client, admin_user):
    add = reverse("admin:learning_goldenexample_add")

    response = admin_client.post(
        add,
        {
            "question": "How long do I have to return boots?",
            "expected_answer": "You can return unworn items within 60 days.",
            "required_facts": "60 days\n\n  unworn  \n",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    example = GoldenExample.objects.get()
    assert example.required_facts == ["60 days", "unworn"]
    assert example.created_by == admin_user and example.is_active
    page = admin_client.get(
        reverse("admin:learning_goldenexample_change", args=[example.pk])
    ).content.decode()
    assert "60 days\nunworn</textarea>" in page


def test_it_searches_golden_examples(admin_client):
    GoldenExample.objects.create(question="Return window?", expected_answer="60 days")
    GoldenExample.objects.create(question="Shipping cost?", expected_answer="Free over $50")
    url = reverse("admin:learning_goldenexample_changelist")

    found = admin_client.get(url, {"q": "shipping"}).context["cl"].result_list

    assert [g.question for g in found] == ["Shipping cost?"]


# --- Feedback export --------------------------------------------------------------------------


@pytest.fixture
def rated():
    conversation = Conversation.objects.create(session_key="s")

    def rate(question: str, reply: str, rating: int, **kw) -> Feedback:
        Message.objects.create(conversation=conversation, role="user", text=question)
        message = Message.objects.create(
            conversation=conversation, role="assistant", text=reply, finish_reason="stop"
        )
        return Feedback.objects.create(
            message=message,
            conversation=conversation,
            owner_key="session:s",
            rating=rating,
            **kw,
        )

    return {
        "up": rate("Return window?", "60 days.", 1, review_status="approved"),
        "down": rate("Ship to Canada?", "No.", -1, correction="Yes, for $15."),
        "rejected": rate("Hi", "Refund, no questions asked!", 1, review_status="rejected"),
    }


def test_it_exports_the_selected_usable_feedback_as_kto_jsonl(operator, rated):
    response = client_for(operator).post(
        FEEDBACK_LIST,
        {"action": "export_kto_jsonl", "_selected_action": [fb.pk for fb in rated.values()]},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert response["Content-Disposition"].startswith('attachment; filename="feedback-kto-')
    rows = [json.loads(line) for line in response.content.decode().splitlines()]
    completions = {(r["completion"][0]["content"], r["label"]) for r in rows}
    assert completions == {("60 days.", True), ("No.", False), ("Yes, for $15.", True)}
    for row in rows:
        assert row["completion"][0]["role"] == "assistant"
        assert row["prompt"][-1]["role"] == "user"
    by_reply = {r["completion"][0]["content"]: r for r in rows}
    assert by_reply["No."]["prompt"][-1]["content"] == "Ship to Canada?"


def test_it_exports_only_the_selection(operator, rated):
    response = client_for(operator).post(
        FEEDBACK_LIST, {"action": "export_kto_jsonl", "_selected_action": [rated["up"].pk]}
    )

    rows = [json.loads(line) for line in response.content.decode().splitlines()]
    assert [r["completion"][0]["content"] for r in rows] == ["60 days."]


def test_it_downloads_nothing_when_only_rejected_feedback_is_selected(operator, rated):
    response = client_for(operator).post(
        FEEDBACK_LIST,
        {"action": "export_kto_jsonl", "_selected_action": [rated["rejected"].pk]},
        follow=True,
    )

    assert "Content-Disposition" not in response
    assert "Nothing to export: rejected feedback is never exported." in page_messages(response)


def test_it_charts_the_thumbs_up_share_per_day(operator, rated):
    page = client_for(operator).get(FEEDBACK_LIST).content.decode()

    assert "Thumbs-up share per day" in page and "67% (2 of 3)" in page


# --- Who gets in ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_it_keeps_everyone_but_staff_out_of_the_learning_pages(client, customer_user, lineage, who):
    if who == "customer":
        client.force_login(customer_user)
    run = finished_run(lineage)
    urls = [
        RUNS,
        reverse("admin:learning_trainingrun_change", args=[run.pk]),
        reverse("admin:learning_goldenexample_changelist"),
        reverse("admin:learning_modelversion_promote", args=[lineage["v3"].pk]),
        reverse("admin:learning_modelversion_rollback", args=[lineage["base"].pk]),
    ]

    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


# --- Live progress in a real browser ----------------------------------------------------------


def _in_other_thread(work) -> None:
    """ORM calls while Playwright's event loop runs in this thread must go elsewhere."""

    def target() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_running_runs_page_follows_its_progress_in_the_browser(
    chromium, live_server, django_user_model
):
    from playwright.sync_api import expect, sync_playwright

    django_user_model.objects.create_superuser("op", "op@example.com", "op-pass-123")
    run = TrainingRun.objects.create(trigger="operator", status=TrainingRun.Status.QUEUED)
    url = live_server.url + reverse("admin:learning_trainingrun_change", args=[run.pk])

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--disable-background-networking"]
        )
        try:
            page = browser.new_page()
            page.goto(live_server.url + reverse("admin:login") + "?next=" + url)
            page.get_by_label("Username").fill("op")
            page.get_by_label("Password").fill("op-pass-123")
            page.get_by_role("button", name="Log in").click()
            progress = page.locator(".run-progress [data-progress-text]")
            expect(progress).to_have_text("waiting for a worker")

            # Before its steps: the phase, with its own progress.
            _in_other_thread(
                lambda: TrainingRun.objects.filter(pk=run.pk).update(
                    status="running",
                    total_steps=28,
                    metrics_after={"phase": "fisher", "phase_done": 5, "phase_total": 128},
                )
            )
            expect(progress).to_have_text(
                "Estimating the Fisher information (once per anchor) 5/128", timeout=10_000
            )
            _in_other_thread(
                lambda: TrainingRun.objects.filter(pk=run.pk).update(
                    status="running", step=7, total_steps=28, loss_history=[2.0, 1.5]
                )
            )
            expect(progress).to_have_text("7 / 28 steps (25%)", timeout=10_000)
            expect(page.locator(".run-progress [data-progress-loss]")).to_have_text("loss 1.500")
            expect(page.get_by_role("status")).to_have_text(f"Run {run.pk} is running.")

            _in_other_thread(
                lambda: TrainingRun.objects.filter(pk=run.pk).update(
                    status="failed", step=28, error="RuntimeError: out of memory"
                )
            )
            # The page reloads itself once the run ends, to show the outcome.
            expect(page.locator("pre.run-error")).to_have_text(
                "RuntimeError: out of memory", timeout=10_000
            )
            assert "run-progress.js" not in page.content()
        finally:
            browser.close()


@pytest.mark.parametrize("url", [RUNS, VERSIONS])
def test_it_lists_runs_and_versions_in_a_fixed_number_of_queries(
    operator, lineage, django_assert_max_num_queries, url
):
    client = client_for(operator)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for n in range(15):
        made = version(f"extra-{n}", metrics={"retention_perplexity": 12 + n / 10})
        TrainingRun.objects.create(
            trigger="operator",
            triggered_by=operator,
            status=TrainingRun.Status.REJECTED,
            result_version=made,
            gate_passed=False,
        )

    with django_assert_max_num_queries(len(few)):
        page = client.get(url).content.decode()
    assert "extra-14" in page


def test_it_filters_feedback_by_whether_a_promoted_model_learned_from_it(operator, rated, lineage):
    run = finished_run(lineage)
    Feedback.objects.filter(pk=rated["up"].pk).update(used_by_run=run)
    client = client_for(operator)

    learned = client.get(FEEDBACK_LIST, {"learned": "yes"}).context["cl"].result_list
    not_yet = client.get(FEEDBACK_LIST, {"learned": "no"}).context["cl"].result_list
    page = client.get(
        reverse("admin:conversations_feedback_change", args=[rated["up"].pk])
    ).content.decode()

    assert [fb.pk for fb in learned] == [rated["up"].pk]
    assert {fb.pk for fb in not_yet} == {rated["down"].pk, rated["rejected"].pk}
    run_url = reverse("admin:learning_trainingrun_change", args=[run.pk])
    assert f'<a href="{run_url}">Training run #{run.pk}</a>' in page


def test_it_answers_404_for_an_unknown_version(operator, lineage):
    client = client_for(operator)

    for bad in ["999999", "not-a-number"]:
        url = reverse("admin:learning_modelversion_promote", args=[bad])
        assert client.post(url, {"note": "x"}).status_code == 404, bad

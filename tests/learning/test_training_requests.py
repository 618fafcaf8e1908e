"""Requesting, claiming and recovering training runs; the operators' JSON endpoint."""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone

from admin_parts.charts import loss_curve_svg
from conversations.models import Feedback
from learning import runs
from learning.models import TrainingRun
from tests.learning.consistent_feedback import rate_consistently


@pytest.fixture
def queued(monkeypatch):
    """Record what would be sent to Celery instead of sending it."""
    sent = []
    monkeypatch.setattr(runs, "enqueue_training_run", sent.append)
    return sent


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="operate_learning"))
    return user


@pytest.mark.django_db(transaction=True)
def test_it_queues_one_run_and_enqueues_it_after_commit(queued):
    run, created = runs.request_training_run(trigger=TrainingRun.Trigger.COMMAND)
    assert created and run.status == TrainingRun.Status.QUEUED
    assert queued == [run.pk]
    assert run.hyperparameters["lr"] > 0 and run.hyperparameters["regularizer"] in ("l2sp", "ewc")
    again, created_again = runs.request_training_run(trigger=TrainingRun.Trigger.COMMAND)
    assert (again.pk, created_again) == (run.pk, False)
    assert queued == [run.pk]


@pytest.mark.django_db(transaction=True)
def test_two_triggers_at_once_queue_one_run(queued):
    barrier = threading.Barrier(2)
    results = []

    def trigger():
        barrier.wait()
        try:
            results.append(runs.request_training_run(trigger=TrainingRun.Trigger.OPERATOR))
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert TrainingRun.objects.count() == 1
    assert sorted(created for _, created in results) == [False, True]
    assert len(queued) == 1


@pytest.mark.django_db
def test_it_refuses_unknown_or_bad_hyperparameters(queued):
    with pytest.raises(ValueError, match="unknown hyper-parameters: nope"):
        runs.request_training_run(trigger="command", overrides={"nope": 1})
    with pytest.raises(ValueError, match="loss must be"):
        runs.request_training_run(trigger="command", overrides={"loss": "dpo"})
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_run_is_claimed_once():
    run = TrainingRun.objects.create(trigger="command")
    assert runs.claim_run(run.pk)
    assert not runs.claim_run(run.pk)  # a duplicate delivery while it runs does nothing
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.attempts == 1


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_taken_over_and_starts_clean(settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    leftover = tmp_path / ".run-1-a1.abc123"  # write_checkpoint's staging directory
    run = TrainingRun.objects.create(
        pk=1,
        trigger="command",
        status=TrainingRun.Status.RUNNING,
        worker="elsewhere:1",
        heartbeat_at=timezone.now(),
        step=7,
        loss_history=[1.0, 0.5],
        attempts=1,
    )
    leftover.mkdir()
    assert not runs.claim_run(run.pk)  # alive as far as we can tell
    TrainingRun.objects.filter(pk=run.pk).update(worker=f"{runs.socket.gethostname()}:999999")
    assert runs.claim_run(run.pk)  # that pid is gone: a redelivery takes over
    run.refresh_from_db()
    assert (run.attempts, run.step, run.loss_history) == (2, 0, [])
    assert not leftover.exists()


@pytest.mark.django_db
def test_a_run_whose_worker_keeps_dying_is_given_up(settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    settings.LEARNING_MAX_ATTEMPTS = 2
    dead_worker = f"{runs.socket.gethostname()}:999999"
    run = TrainingRun.objects.create(
        trigger="command", status="running", worker=dead_worker, attempts=1
    )
    assert runs.claim_run(run.pk)  # the second attempt
    TrainingRun.objects.filter(pk=run.pk).update(worker=dead_worker)  # ...died too
    staged = tmp_path / f".run-{run.pk}-a2.xyz"
    staged.mkdir()

    assert not runs.claim_run(run.pk)

    run.refresh_from_db()
    assert (run.status, run.attempts) == (TrainingRun.Status.FAILED, 2)
    assert run.error.startswith("Gave up after 2 attempts") and run.finished_at
    assert not staged.exists() and runs.open_run() is None


@pytest.mark.django_db
def test_stale_runs_are_marked_failed(settings):
    stale = timezone.now() - timedelta(minutes=settings.LEARNING_STALE_RUN_MINUTES + 1)
    dead = TrainingRun.objects.create(trigger="schedule", status="running", heartbeat_at=stale)
    assert runs.fail_stale_runs() == 1
    dead.refresh_from_db()
    assert dead.status == TrainingRun.Status.FAILED and "stopped reporting" in dead.error


@pytest.mark.django_db
def test_the_api_lets_operators_trigger_and_read_a_run(client, operator, queued):
    client.force_login(operator)
    response = client.post("/api/learning/runs/")
    assert response.status_code == 202
    run_id = response.json()["run"]["id"]
    assert TrainingRun.objects.get(pk=run_id).triggered_by == operator
    assert client.post("/api/learning/runs/").json() == {
        "created": False,
        "run": client.get(f"/api/learning/runs/{run_id}/").json(),
    }
    status = client.get("/api/learning/status/").json()
    assert status["open_run"]["id"] == run_id


@pytest.mark.django_db
def test_the_api_refuses_customers_and_staff_without_the_permission(
    client, customer_user, django_user_model, queued
):
    assert client.post("/api/learning/runs/").status_code == 403
    client.force_login(customer_user)
    assert client.get("/api/learning/status/").status_code == 403
    staff = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get("/api/learning/status/").status_code == 200
    response = client.post("/api/learning/runs/")
    assert response.status_code == 403 and "operate_learning" in response.json()["error"]
    assert not TrainingRun.objects.exists()


def test_the_loss_curve_is_an_accessible_svg():
    svg = str(loss_curve_svg([2.0, 1.5, 1.0, 0.8]))
    assert svg.startswith("<svg") and 'role="img"' in svg and "from 2.000 to 0.800" in svg
    assert svg.count(",") >= 4
    assert "No loss values" in str(loss_curve_svg([]))


@pytest.mark.django_db
def test_the_periodic_check_queues_a_run_once_enough_feedback_is_new(settings, queued):
    settings.LEARNING_MIN_NEW_FEEDBACK = 25
    rows = rate_consistently(rounds=1)  # 24 rows
    assert runs.queue_run_if_enough_feedback() is None

    rate_consistently(rounds=1, owner_prefix="more")
    run = runs.queue_run_if_enough_feedback()

    assert run is not None and run.trigger == TrainingRun.Trigger.SCHEDULE
    assert runs.queue_run_if_enough_feedback() is None  # one open run at a time
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    Feedback.objects.filter(pk__in=[r.pk for r in rows]).update(used_by_run=run)
    assert runs.queue_run_if_enough_feedback() is None  # 24 new rows left: below the bar


@pytest.mark.django_db
def test_the_periodic_check_fails_a_dead_run_first(settings, queued):
    stale = timezone.now() - timedelta(minutes=settings.LEARNING_STALE_RUN_MINUTES + 1)
    dead = TrainingRun.objects.create(trigger="schedule", status="running", heartbeat_at=stale)
    settings.LEARNING_MIN_NEW_FEEDBACK = 1
    rate_consistently(rounds=1)

    run = runs.queue_run_if_enough_feedback()

    dead.refresh_from_db()
    assert dead.status == TrainingRun.Status.FAILED and run is not None and run.pk != dead.pk


@pytest.mark.django_db
def test_after_a_rejection_the_periodic_check_waits_for_new_feedback(settings, queued):
    settings.LEARNING_MIN_NEW_FEEDBACK = 24
    rate_consistently(rounds=1)  # 24 rows
    first = runs.queue_run_if_enough_feedback()
    assert first is not None
    started = timezone.now()
    TrainingRun.objects.filter(pk=first.pk).update(status="rejected", started_at=started)

    assert runs.queue_run_if_enough_feedback() is None  # the same data: not tried again
    assert runs.usable_feedback_count() == 24  # still usable, by hand or with new data

    rate_consistently(rounds=1, owner_prefix="newer")  # 24 rows rated since the rejection
    second = runs.queue_run_if_enough_feedback()
    assert second is not None and second.pk != first.pk
    TrainingRun.objects.filter(pk=second.pk).update(status="rejected", started_at=timezone.now())

    assert runs.queue_run_if_enough_feedback() is None  # rejected twice: still waits
    TrainingRun.objects.filter(pk=second.pk).update(status="failed")
    assert runs.queue_run_if_enough_feedback() is not None  # a failure is retried

"""End to end with a real Celery worker: Retrain now in the admin → worker → gate → the next reply.

The worker is a subprocess (``celery -A chatbot_site worker -Q default,gpu --pool=prefork -c 1``)
on the test database and the real broker (Redis in CI). The candidate is made promotable
deterministically by the feedback and pinned hyper-parameters (PROMOTABLE in
tests/learning/consistent_feedback.py: α 3e-4, λ 10, l2sp, sft_ul with unlikelihood weight 1,
replay 0.25, batch 8, seed 0 on the CPU), with LEARNING_MAX_STEPS=12 to keep the run short.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.urls import reverse

from conversations.models import Feedback, Message
from learning.models import ModelVersion, TrainingRun
from serving.backends import forget_active_version
from tests.conversations.chat_sockets import chat_turn, new_session_cookie, open_chat
from tests.learning.consistent_feedback import pin_promotable_hyperparameters, rate_consistently
from tests.learning.worker_process import (  # noqa: F401
    child_pids,
    wait_until,
    worker_process_fixture,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

FINISHED = (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.REJECTED, TrainingRun.Status.FAILED)


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="operate_learning"))
    return user


def finished_run() -> TrainingRun | None:
    return TrainingRun.objects.filter(status__in=FINISHED).select_related("result_version").first()


async def ask(question: str) -> dict:
    socket, _ = await open_chat(await new_session_cookie())
    try:
        return await chat_turn(socket, question)
    finally:
        await socket.disconnect()


# Any child past 1 MiB is replaced after its task: after the run, its memory goes back.
@pytest.mark.worker_env(CELERY_WORKER_MAX_MEMORY_PER_CHILD="1024")
def test_a_retrain_queued_in_the_admin_is_promoted_and_answers_the_next_message(
    active_model_version, celery_worker_process, operator, client, settings
):
    pin_promotable_hyperparameters(settings)
    settings.LEARNING_MAX_STEPS = 12
    feedback = rate_consistently(rounds=2)
    client.force_login(operator)

    response = client.post(reverse("admin:learning_trainingrun_retrain"))

    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert (run.trigger, run.triggered_by) == ("operator", operator)
    # An idle worker may have claimed it already.
    assert run.status in {TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING}
    assert response.url == reverse("admin:learning_trainingrun_change", args=[run.pk])

    run = wait_until(
        finished_run, timeout=600, what="the run to finish", worker=celery_worker_process
    )
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.gate_reasons, run.error)
    host, _, pid = run.worker.rpartition(":")
    assert host and pid.isdigit() and int(pid) != celery_worker_process.process.pid
    assert run.attempts == 1 and run.step == run.total_steps == 12
    assert run.hyperparameters["max_steps"] == 12
    candidate = run.result_version
    assert (
        candidate.status == ModelVersion.Status.ACTIVE and candidate.parent == active_model_version
    )
    assert Feedback.objects.filter(used_by_run=run).count() == len(feedback)
    # The child that trained exits once its task is done; a fresh one takes its place.
    wait_until(
        lambda: int(pid) not in child_pids(celery_worker_process),
        timeout=60,
        what="the training child to be replaced",
        worker=celery_worker_process,
    )
    wait_until(
        lambda: child_pids(celery_worker_process),
        timeout=60,
        what="a fresh child",
        worker=celery_worker_process,
    )

    # The web side (this process) answers with the promoted version from its next reply on.
    forget_active_version()  # instead of waiting GENERATION_POLL_SECONDS
    turn = async_to_sync(ask)("how do i track my order")

    assert turn["end"]["model_version"] == candidate.name
    assert Message.objects.get(pk=turn["end"]["id"]).model_version == candidate

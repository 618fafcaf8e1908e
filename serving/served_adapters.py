"""LoRA adapter versions on the inference server: load the one being activated, unload retired ones.

With ``GENERATION_BACKEND=openai`` and ``GENERATION_SERVER_LORA_RUNTIME`` on, the server is vLLM
started with ``--enable-lora``, ``--max-loras`` >= 2 and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``
on the frozen base the adapters apply to. Every adapter version is served under its own name
(``ModelVersion.name``, new with every promotion: an adapter is never reloaded in place under a
name the server already has), from its checkpoint directory (peft's adapter_config.json and
adapter_model.safetensors), which the server must see at the same path.

Ordering: the adapter is loaded *before* the activation commits. Web processes name the active
version in their requests at most GENERATION_POLL_SECONDS after the commit, and the server answers
404 for a name it has not loaded, so loading after the commit (on_commit, a Celery task) would
make every promotion a window of failed replies as long as the poll interval plus the queue's
delay. The registry announces the activation before its transaction (``version_activating``,
``learning.signals``) and ``load_for_activation`` loads the adapter then, with no row locked:
a slow server holds up that one activation, never another or a reader. The call is bounded by
GENERATION_SERVER_CONNECT_TIMEOUT (a server that is down fails at once) and
GENERATION_SERVER_READ_TIMEOUT.

One race is left, and mended: a rollback to a version whose delayed unload falls due during
that load (``unload_if_retired`` takes the row lock, sees the version not active yet, and
unloads it). So once a version that had been retired is active again, ``after_activation``
asks the server whether it still has the adapter and, if not, queues its load.

A failed load does not fail the activation: promoting or rolling back is the gate's or an
operator's decision, and a down server must not block a rollback. The failure is logged,
written on the version's activation note (the admin shows it), and a Celery task retries the
load while the version stays active; ``manage.py sync_served_adapters`` does the same by hand
(and after a server restart, which forgets runtime-loaded adapters). Until then replies fail
as they do whenever the server cannot answer.

The retired adapter is unloaded GENERATION_SERVER_UNLOAD_DELAY seconds after the commit, so
that streams that started on it can end; the unload re-checks, under the row lock, that the
version is not active again. A full-weight version cannot be loaded at run time: the server has
to be restarted on its checkpoint (a warning says so).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learning.models import ModelVersion

logger = logging.getLogger(__name__)

LOAD_TASK = "serving.tasks.load_served_adapter"
UNLOAD_TASK = "serving.tasks.unload_retired_adapter"

# Starts the remark on a version's activation note while its adapter is not on the server.
NOT_LOADED_REMARK = " [inference server: adapter not loaded: "
NOT_LOADED_REMARK_CHARS = 240


class InferenceServerError(Exception):
    """The server refused a LoRA request (bad path, runtime updating off, wrong key...)."""


class InferenceServerUnreachable(InferenceServerError):
    """The server could not be reached, timed out or failed (5xx): worth retrying."""


def runtime_lora_enabled() -> bool:
    return settings.GENERATION_BACKEND == "openai" and settings.GENERATION_SERVER_LORA_RUNTIME


def is_adapter(version: ModelVersion) -> bool:
    """A LoRA adapter checkpoint (its frozen base is recorded) rather than full weights."""
    return version.adapter_base_id is not None


def adapter_path(version: ModelVersion) -> str:
    """The adapter's checkpoint directory, absolute: the server runs in another directory."""
    return os.path.abspath(version.checkpoint_path)


# --- The server's runtime LoRA endpoints ----------------------------------------------------


def _headers() -> dict[str, str]:
    key = settings.GENERATION_SERVER_API_KEY
    return {"Authorization": f"Bearer {key}"} if key else {}


def _request(method: str, endpoint: str, payload: dict[str, str] | None = None) -> Any:
    """One call to the server, within its connect and read timeouts."""
    import httpx  # only where runtime LoRA is on

    url = f"{settings.GENERATION_SERVER_URL}/{endpoint}"
    timeout = httpx.Timeout(
        settings.GENERATION_SERVER_READ_TIMEOUT, connect=settings.GENERATION_SERVER_CONNECT_TIMEOUT
    )
    try:
        return httpx.request(method, url, json=payload, headers=_headers(), timeout=timeout)
    except httpx.HTTPError as error:  # refused, timed out, reset
        raise InferenceServerUnreachable(f"{url}: {error or type(error).__name__}") from error


def _refusal(response: Any) -> str:
    return f"HTTP {response.status_code}: {response.text.strip()[:300]}"


def load_adapter(name: str, path: str) -> None:
    """``POST /load_lora_adapter``; an adapter already loaded under ``name`` counts as loaded.

    vLLM answers 200 ("Success: LoRA adapter 'name' added successfully."), or 400 "The lora
    adapter 'name' has already been loaded." when it has it (the same name is always the same
    checkpoint here).
    """
    response = _request("POST", "load_lora_adapter", {"lora_name": name, "lora_path": path})
    if response.status_code == 200:
        return
    if response.status_code == 400 and "already" in response.text:
        return
    if response.status_code >= 500:
        raise InferenceServerUnreachable(_refusal(response))
    raise InferenceServerError(_refusal(response))


def unload_adapter(name: str) -> None:
    """``POST /unload_lora_adapter``; an adapter the server does not have (404) is unloaded."""
    response = _request("POST", "unload_lora_adapter", {"lora_name": name})
    if response.status_code in (200, 404):
        return
    if response.status_code >= 500:
        raise InferenceServerUnreachable(_refusal(response))
    raise InferenceServerError(_refusal(response))


def served_models() -> dict[str, str | None]:
    """``GET /models``: every name the server answers to, with its parent (None for a base
    model, the base's name for a LoRA adapter)."""
    response = _request("GET", "models")
    if response.status_code != 200:
        raise InferenceServerError(_refusal(response))
    return {card["id"]: card.get("parent") for card in response.json().get("data", [])}


def send_task(task: str, args: list, *, countdown: float) -> None:
    # By name: serving.tasks calls this module, so this module does not import it.
    current_app.send_task(task, args=args, countdown=countdown)


# --- Activation ---------------------------------------------------------------------------


def load_for_activation(version: ModelVersion) -> str:
    """Load ``version``'s adapter on the server before its activation commits (module docstring:
    why before). Returns the remark for its activation note: "" when it is loaded or nothing
    needs loading, else why not, which ``after_activation`` reads to queue a retry."""
    if not runtime_lora_enabled():
        return ""
    if not is_adapter(version):
        logger.warning(
            "%s is a full-weight checkpoint: the inference server cannot load it at run time. "
            "Unless the server already serves it as its base model under the name %r, restart "
            "the server on %s (vLLM: --served-model-name %s); until then replies fail.",
            version.name,
            version.name,
            version.checkpoint_path,
            version.name,
        )
        return ""
    try:
        load_adapter(version.name, adapter_path(version))
    except InferenceServerError as error:
        logger.error(
            "%s is active but its adapter is not loaded on the inference server: %s. A task "
            "retries; `manage.py sync_served_adapters` loads it by hand.",
            version.name,
            error,
        )
        return not_loaded_remark(str(error))
    logger.info("inference server loaded adapter %s", version.name)
    return ""


def not_loaded_remark(reason: str) -> str:
    return (
        f"{NOT_LOADED_REMARK}{reason}"[: NOT_LOADED_REMARK_CHARS - 40]
        + "; retrying, or run sync_served_adapters]"
    )


def after_activation(
    version: ModelVersion, retired: ModelVersion | None, *, was_retired: bool = False
) -> None:
    """Once the activation has committed: queue the load's retry, and the retired adapter's
    unload after GENERATION_SERVER_UNLOAD_DELAY (now, with no delay). ``was_retired``: the
    version had been retired, so its delayed unload may have run during the load (module
    docstring). A broker or server that is down is logged and retried, and
    ``sync_served_adapters`` mends whatever is left."""
    if not runtime_lora_enabled():
        return
    if is_adapter(version) and (
        NOT_LOADED_REMARK in version.activation_note
        or (was_retired and not _still_served(version.name))
    ):
        _send(LOAD_TASK, [version.pk], countdown=5)
    if retired is None or retired.pk == version.pk or not is_adapter(retired):
        return
    delay = settings.GENERATION_SERVER_UNLOAD_DELAY
    if delay > 0:
        _send(UNLOAD_TASK, [retired.name], countdown=delay)
        return
    try:
        unload_if_retired(retired.name)
    except InferenceServerUnreachable:
        _send(UNLOAD_TASK, [retired.name], countdown=5)
    except InferenceServerError as error:
        logger.error(
            "unloading adapter %s failed (%s); run `manage.py sync_served_adapters`",
            retired.name,
            error,
        )


def _still_served(name: str) -> bool:
    try:
        return name in served_models()
    except InferenceServerError:  # cannot tell: the load went through a moment ago
        return True


def _send(task: str, args: list, *, countdown: float) -> None:
    try:
        send_task(task, args, countdown=countdown)
    except Exception:  # the broker is down: the activation stands
        logger.exception("could not queue %s%s; run `manage.py sync_served_adapters`", task, args)


# --- After the activation: retries, unloads, repair -----------------------------------------


def load_if_active(version_id: int) -> bool:
    """Load the adapter of version ``version_id`` if it is still the active one (the load's
    retry); clears the remark on its activation note. False: nothing to load."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None or version.status != ModelVersion.Status.ACTIVE:
            return False
        if not is_adapter(version):
            return False
        load_adapter(version.name, adapter_path(version))
        if NOT_LOADED_REMARK in version.activation_note:
            version.activation_note = version.activation_note.split(NOT_LOADED_REMARK)[0]
            version.save(update_fields=["activation_note"])
    logger.info("inference server loaded adapter %s", version.name)
    return True


def unload_if_retired(name: str) -> bool:
    """Unload the adapter served as ``name`` unless its version is active (again): the check
    and the call hold the version's row lock, as the activation's transaction does."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(name=name).first()
        if version is not None and version.status == ModelVersion.Status.ACTIVE:
            logger.info("not unloading adapter %s: it is the active version", name)
            return False
        unload_adapter(name)
    logger.info("inference server unloaded adapter %s", name)
    return True


def sync_served_adapters(*, now: datetime | None = None) -> list[str]:
    """Make the server match the database: the active adapter loaded, retired adapter versions
    unloaded (once the active one has been active for GENERATION_SERVER_UNLOAD_DELAY). Safe to
    repeat. Returns what it did, one line each."""
    now = now or timezone.now()
    served = served_models()
    active = ModelVersion.objects.active().first()
    done = []
    if active is None:
        done.append("No version is active.")
    elif is_adapter(active):
        load_if_active(active.pk)
        done.append(f"{active.name}: loaded.")
    elif active.name in served:
        done.append(f"{active.name}: served as the server's base model.")
    else:
        done.append(
            f"{active.name} is a full-weight checkpoint the server does not serve: restart it "
            f"on {active.checkpoint_path} (vLLM: --served-model-name {active.name})."
        )
    delay = timedelta(seconds=settings.GENERATION_SERVER_UNLOAD_DELAY)
    recent = active is not None and active.activated_at and now - active.activated_at < delay
    retired = ModelVersion.objects.filter(
        name__in=[name for name, parent in served.items() if parent is not None]
    ).exclude(status=ModelVersion.Status.ACTIVE)
    for version in retired.order_by("pk"):
        if recent:
            done.append(f"{version.name}: kept while streams on it may still run.")
        elif unload_if_retired(version.name):
            done.append(f"{version.name}: unloaded.")
    return done

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
delay. ``activate_version`` therefore calls ``switch_served_adapter`` inside its transaction,
once the version rows are locked, and no web process can see the new version until the load has
answered. The lock also orders the load against a delayed unload of the same name
(``unload_if_retired`` takes the version's row lock), so a rollback to a version whose unload
is due keeps its adapter. The call is bounded by GENERATION_SERVER_CONNECT_TIMEOUT (a server
that is down fails at once) and GENERATION_SERVER_READ_TIMEOUT; other activations wait for it,
readers do not.

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learning.models import ModelVersion

logger = logging.getLogger(__name__)

LOAD_TASK = "learning.tasks.load_served_adapter"
UNLOAD_TASK = "learning.tasks.unload_retired_adapter"

# Starts the remark on a version's activation note while its adapter is not on the server.
NOT_LOADED_REMARK = " [inference server: adapter not loaded: "
NOT_LOADED_REMARK_CHARS = 240
ACTIVATION_NOTE_CHARS = 500


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
    # By name: learning.tasks calls this module, so this module does not import it.
    current_app.send_task(task, args=args, countdown=countdown)


# --- Activation ---------------------------------------------------------------------------


@dataclass
class AdapterSwitch:
    """What an activation did on the server, and what is left for after its commit."""

    version_id: int
    load_failed: str = ""  # why the adapter is not loaded yet ("" when it is, or none is needed)
    retired_adapter: str = ""  # the name to unload once its streams have ended

    def annotate(self, note: str) -> str:
        """The activation note, with a remark while the adapter is not on the server."""
        if not self.load_failed:
            return note[:ACTIVATION_NOTE_CHARS]
        remark = (
            f"{NOT_LOADED_REMARK}{self.load_failed}"[: NOT_LOADED_REMARK_CHARS - 40]
            + "; retrying, or run sync_served_adapters]"
        )
        return note[: ACTIVATION_NOTE_CHARS - len(remark)] + remark

    def after_commit(self) -> None:
        """Queue the load's retry and the retired adapter's unload (now, with no delay). The
        activation is committed: a broker or server that is down is logged and retried, and
        ``sync_served_adapters`` mends whatever is left."""
        if self.load_failed:
            self._send(LOAD_TASK, [self.version_id], countdown=5)
        if not self.retired_adapter:
            return
        delay = settings.GENERATION_SERVER_UNLOAD_DELAY
        if delay > 0:
            self._send(UNLOAD_TASK, [self.retired_adapter], countdown=delay)
            return
        try:
            unload_if_retired(self.retired_adapter)
        except InferenceServerUnreachable:
            self._send(UNLOAD_TASK, [self.retired_adapter], countdown=5)
        except InferenceServerError as error:
            logger.error(
                "unloading adapter %s failed (%s); run `manage.py sync_served_adapters`",
                self.retired_adapter,
                error,
            )

    def _send(self, task: str, args: list, *, countdown: float) -> None:
        try:
            send_task(task, args, countdown=countdown)
        except Exception:  # the broker is down: the activation stands
            logger.exception(
                "could not queue %s%s; run `manage.py sync_served_adapters`", task, args
            )


def switch_served_adapter(version: ModelVersion, *, retiring: ModelVersion | None) -> AdapterSwitch:
    """Load ``version``'s adapter on the server, within the activation's transaction (module
    docstring: why before the commit), and say what to do with ``retiring`` after it."""
    switch = AdapterSwitch(version.pk)
    if not runtime_lora_enabled():
        return switch
    if retiring is not None and retiring.pk != version.pk and is_adapter(retiring):
        switch.retired_adapter = retiring.name
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
        return switch
    try:
        load_adapter(version.name, adapter_path(version))
    except InferenceServerError as error:
        switch.load_failed = str(error)
        logger.error(
            "%s is active but its adapter is not loaded on the inference server: %s. A task "
            "retries; `manage.py sync_served_adapters` loads it by hand.",
            version.name,
            error,
        )
    else:
        logger.info("inference server loaded adapter %s", version.name)
    return switch


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
    and the call hold the version's row lock, as an activation does while it loads."""
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

"""Shared fixtures: an owner, a teammate and an outsider, the tiny model, and Chromium."""

import os
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from channels.layers import channel_layers
from django.db import connections

pytest_plugins = [
    "tests.model_fixtures",
    "tests.knowledge_fixtures",
    "tests.conversations.retrieval_stubs",
    "tests.conversations.chat_sockets",
]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _close_connections_of_the_sync_thread():
    """Close what async tests' ORM calls left open in asgiref's shared sync thread.

    An async test's `database_sync_to_async` and async ORM calls run in that one thread, whose
    connection outlives the test: on PostgreSQL it would keep a session on the test database
    into the next test's flush and block dropping the database at the end.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(autouse=True)
def _the_profile_and_threshold_read_afresh():
    """Each test reads the business profile and the calibrated threshold from its own database
    (each process caches them for KNOWLEDGE_POLL_SECONDS: knowledge.polled)."""
    from knowledge import calibration, profile

    profile.forget_profile()
    calibration.forget_threshold()
    yield
    profile.forget_profile()
    calibration.forget_threshold()


@pytest.fixture(autouse=True)
def _a_channel_layer_per_test():
    """Give every test its own channel layer object.

    Each async test runs on its own event loop, and channels-redis keeps receive state (a
    lock, the loop it belongs to, a count of receivers) on the layer object. A consumer still
    receiving when a test's loop closes is finalized later, on garbage collection, and its
    cleanup then corrupts that state for whichever test is running ("Lock ... is bound to a
    different event loop"). Seen in CI once the handoff tests added many sockets per test.
    """
    yield
    channel_layers.backends.clear()


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def customer_user(django_user_model):
    return django_user_model.objects.create_user(username="customer", password="customer-pass-123")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The headless browser of the `browser` tests; CI (CHATBOT_REQUIRE_BROWSER=1) must have it."""
    if not CHROMIUM.exists():
        if os.environ.get("CHATBOT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and CHATBOT_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (set CHATBOT_REQUIRE_BROWSER=1 to fail instead)")
    return CHROMIUM

"""Shared fixtures: an owner, a teammate and an outsider for every feature, and the tiny model."""

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

pytest_plugins = ["tests.model_fixtures"]


@pytest.fixture(autouse=True)
def _close_connections_of_the_sync_thread():
    """Close what async tests' ORM calls left open in asgiref's shared sync thread.

    An async test's `database_sync_to_async` and async ORM calls run in that one thread, whose
    connection outlives the test: on PostgreSQL it would keep a session on the test database
    into the next test's flush and block dropping the database at the end.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def customer_user(django_user_model):
    return django_user_model.objects.create_user(username="customer", password="customer-pass-123")

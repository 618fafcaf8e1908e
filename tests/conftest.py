"""Shared fixtures: an owner, a teammate and an outsider for every feature, and the tiny model."""

import pytest

pytest_plugins = ["tests.model_fixtures"]


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="staff-pass-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def customer_user(django_user_model):
    return django_user_model.objects.create_user(username="customer", password="customer-pass-123")

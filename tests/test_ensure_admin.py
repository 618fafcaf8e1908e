import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_it_creates_an_admin_once_with_a_printed_password(capsys, settings):
    settings.ADMIN_PASSWORD = ""
    settings.ADMIN_USERNAME = "admin"
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)

    call_command("ensure_admin")
    assert "exists already" in capsys.readouterr().out
    assert get_user_model().objects.count() == 1


def test_it_takes_credentials_from_the_settings(capsys, settings):
    settings.ADMIN_USERNAME = "boss"
    settings.ADMIN_PASSWORD = "s3cret-Pass!"
    call_command("ensure_admin")
    out = capsys.readouterr().out
    assert "s3cret-Pass!" not in out
    assert get_user_model().objects.get(username="boss").check_password("s3cret-Pass!")

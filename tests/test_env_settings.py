"""Settings helpers refuse bad values loudly instead of guessing."""

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatbot_site.env import envbool, envchoice, envfloat, envint, envlist, is_loopback


def test_it_reads_booleans(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert envbool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "0")
    assert envbool("X_FLAG", True) is False
    monkeypatch.delenv("X_FLAG")
    assert envbool("X_FLAG", True) is True


def test_it_refuses_a_bad_boolean(monkeypatch):
    monkeypatch.setenv("X_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        envbool("X_FLAG", False)


def test_it_refuses_bad_numbers(monkeypatch):
    monkeypatch.setenv("X_NUM", "12a")
    with pytest.raises(ImproperlyConfigured, match="X_NUM must be an integer"):
        envint("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "-3")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        envint("X_NUM", 1, minimum=0)
    monkeypatch.setenv("X_NUM", "nan?")
    with pytest.raises(ImproperlyConfigured, match="X_NUM must be a number"):
        envfloat("X_NUM", 1.0)


def test_it_splits_lists(monkeypatch):
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert envlist("X_LIST", []) == ["a.example", "b.example"]


def test_it_fails_at_start_up_on_a_bad_database_url_or_missing_secret(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path)}
    check = [sys.executable, "manage.py", "check"]
    bad_url = subprocess.run(
        check, env={**env, "DATABASE_URL": "postgress:/oops"}, capture_output=True, text=True
    )
    assert bad_url.returncode != 0
    no_secret = subprocess.run(check, env={**env, "DEBUG": "false"}, capture_output=True, text=True)
    assert no_secret.returncode != 0
    assert "SECRET_KEY must be set" in no_secret.stderr


def test_it_refuses_a_value_outside_the_choices(monkeypatch):
    monkeypatch.setenv("X_KIND", "ewc ")
    assert envchoice("X_KIND", "l2sp", ("l2sp", "ewc")) == "ewc"
    monkeypatch.setenv("X_KIND", "l3sp")
    with pytest.raises(ImproperlyConfigured, match="X_KIND must be one of l2sp, ewc"):
        envchoice("X_KIND", "l2sp", ("l2sp", "ewc"))


def test_it_refuses_a_share_above_its_maximum(monkeypatch):
    monkeypatch.setenv("X_SHARE", "1.5")
    with pytest.raises(ImproperlyConfigured, match=r"X_SHARE must be at most 1\.0, got 1\.5"):
        envfloat("X_SHARE", 0.2, minimum=0.0, maximum=1.0)
    monkeypatch.setenv("X_SHARE", "nan")
    with pytest.raises(ImproperlyConfigured, match="X_SHARE must be a number"):
        envfloat("X_SHARE", 0.2, minimum=0.0, maximum=1.0)


def test_it_reads_a_renamed_variable_under_its_old_name_with_a_warning(monkeypatch):
    monkeypatch.delenv("X_NEW_THREADS", raising=False)
    monkeypatch.setenv("X_OLD_THREADS", "3")
    with pytest.warns(FutureWarning, match="X_OLD_THREADS is deprecated: set X_NEW_THREADS"):
        assert envint("X_NEW_THREADS", 1, old="X_OLD_THREADS") == 3
    monkeypatch.setenv("X_NEW_THREADS", "4")  # the new name wins
    assert envint("X_NEW_THREADS", 1, old="X_OLD_THREADS") == 4


def test_the_settings_read_an_old_variable_name(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path), "ENGINE_MAX_QUEUE": "7"}
    show = "from django.conf import settings; print(settings.GENERATION_ENGINE_MAX_QUEUE)"
    shown = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show], env=env, capture_output=True, text=True
    )
    assert shown.stdout.strip().splitlines()[-1] == "7", shown.stderr
    assert "ENGINE_MAX_QUEUE is deprecated: set GENERATION_ENGINE_MAX_QUEUE" in shown.stderr


def test_bound_to_the_network_it_refuses_debug_and_the_development_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path), "WEB_HOST": "0.0.0.0"}
    check = [sys.executable, "manage.py", "check"]

    debug = subprocess.run(check, env=env, capture_output=True, text=True)
    dev_key = subprocess.run(check, env={**env, "DEBUG": "false"}, capture_output=True, text=True)
    safe = {**env, "DEBUG": "false", "SECRET_KEY": "a-real-secret-of-this-deployment"}
    deployed = subprocess.run(check, env=safe, capture_output=True, text=True)
    laptop = subprocess.run(check, env={**env, "WEB_HOST": "127.0.0.1"}, capture_output=True)

    assert debug.returncode != 0 and "WEB_HOST=0.0.0.0 serves other machines" in debug.stderr
    assert dev_key.returncode != 0  # the development key fails first or this check does
    assert deployed.returncode == 0, deployed.stderr
    assert laptop.returncode == 0  # bin/start's default on a laptop keeps working


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.1.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("chat.example.com", False),
    ],
)
def test_it_tells_a_loopback_address(host, loopback):
    assert is_loopback(host) is loopback

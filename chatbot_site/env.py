"""Typed readers for environment variables that fail loudly on a bad value.

Every setting reads one variable with a default. A typo in a boolean or a number
must stop the process at start-up with a clear message, not misbehave later.

A variable that was renamed (so that each area of the settings has one prefix) is still read
under its old name, ``old=``, with a warning that names the new one: an upgrade does not
silently drop an operator's configuration.
"""

from __future__ import annotations

import ipaddress
import os
import re
import warnings
from collections.abc import Callable
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str, old: str | None) -> str | None:
    """The variable's value: under ``name``, else under its ``old`` name (with a warning)."""
    value = os.environ.get(name)
    if value is None and old is not None and old in os.environ:
        warnings.warn(
            f"{old} is deprecated: set {name} instead (the old name is read until it is removed)",
            FutureWarning,
            stacklevel=3,
        )
        return os.environ[old]
    return value


def envstr(name: str, default: str, *, old: str | None = None) -> str:
    raw = _raw(name, old)
    return default if raw is None else raw


def envbool(name: str, default: bool, *, old: str | None = None) -> bool:
    raw = _raw(name, old)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of true/false/1/0/yes/no, got {raw!r}")


def envint(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    old: str | None = None,
) -> int:
    raw = _raw(name, old)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    _check_bounds(name, value, minimum, maximum)
    return value


def envfloat(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    old: str | None = None,
) -> float:
    raw = _raw(name, old)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value != value:  # NaN passes every comparison
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}")
    _check_bounds(name, value, minimum, maximum)
    return value


def _check_bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")


def envlist(
    name: str,
    default: list[str],
    *,
    old: str | None = None,
    item: Callable[[str, str], str] | None = None,
) -> list[str]:
    """A comma-separated list; ``item(name, value)`` checks and normalizes each entry."""
    raw = _raw(name, old)
    values = list(default) if raw is None else [v.strip() for v in raw.split(",") if v.strip()]
    return values if item is None else [item(name, value) for value in values]


def web_origin(name: str, value: str) -> str:
    """``value`` as a browser writes an Origin header: ``scheme://host[:port]``, http or https,
    lower-case, without a default port; anything else (a path, a wildcard) is refused."""
    error = ImproperlyConfigured(
        f"{name}: {value!r} is not an origin such as https://shop.example.com "
        "(a scheme, a host and an optional port; no path, no wildcard)"
    )
    parts = urlsplit(value.strip().lower())
    try:
        port = parts.port
    except ValueError:
        raise error from None
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or not re.fullmatch(r"[a-z0-9.-]+|[0-9a-f:]+", host)
    ):
        raise error
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")


def envchoice(name: str, default: str, choices: tuple[str, ...], *, old: str | None = None) -> str:
    raw = _raw(name, old)
    value = (default if raw is None else raw).strip()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only (127.0.0.0/8,
    ::1, localhost); "0.0.0.0", "::" and any other address serve the network."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False

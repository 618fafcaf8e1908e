"""Which network a connection comes from, as a key that is not the address itself.

Browser sessions cost nothing to make, so caps per session alone do not hold back one machine
opening many; the chat also counts per network (messages a minute, waiting handoffs) and the
learning loop caps what one network contributes to a run. The key is a keyed hash (HMAC with
SECRET_KEY) of the address, for IPv6 of its /64 (a host gets a whole /64): equal for the same
network, useless to anyone without the key, so no address is stored. Behind a proxy
(BEHIND_TLS_PROXY) the address is the last one X-Forwarded-For names, the one the proxy saw.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings


def client_address(scope: Mapping[str, Any]) -> str:
    """The peer's address of an ASGI connection ("" when unknown)."""
    if settings.SECURE_PROXY_SSL_HEADER is not None:
        for name, value in scope.get("headers") or ():
            if name.lower() == b"x-forwarded-for":
                hops = [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
                if hops:
                    return hops[-1]
    client = scope.get("client")
    return str(client[0]) if client else ""


def network_key(address: str) -> str:
    """The key of ``address``'s network ("" for none)."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        network = address  # a host name, e.g. a test client
    else:
        network = (
            str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
        )
    digest = hmac.new(settings.SECRET_KEY.encode(), network.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]

"""How many chat sockets one network may open a minute, counted across web processes.

Sessions and sockets cost nothing to open, and each open socket holds a consumer; the limit on
messages (``services.check_message_rate``) does not stop a machine from opening thousands of
idle ones. The count is a fixed one-minute window in Django's cache, which is Redis wherever
REDIS_URL is set (every web process sees the same count) and this process's memory otherwise
(the one-process setup of ``bin/start``). A connection whose network is unknown is not counted.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache


async def admit_connection(network: str) -> bool:
    """Count a new socket of ``network``; False when the network has opened
    CHAT_CONNECTIONS_PER_MINUTE_PER_NETWORK sockets already this minute."""
    if not network:
        return True
    key = f"chat-connections:{network}:{int(time.time() // 60)}"
    await cache.aadd(key, 0, timeout=120)
    try:
        count = await cache.aincr(key)
    except ValueError:  # expired between the two calls: this is the window's first
        await cache.aset(key, 1, timeout=120)
        count = 1
    return count <= settings.CHAT_CONNECTIONS_PER_MINUTE_PER_NETWORK

"""The chat widget on other sites (docs/widget.md): who may embed the chat, and what it shows.

A business pastes `static/widget/widget.js` into its own site. The widget draws a bubble and
opens the chat in a frame, `/widget/`, served by this site. Three checks keep the chat to the
sites the business named in CHAT_ALLOWED_ORIGINS (besides this site itself):

- `/widget/config.json`, which the widget reads first, answers a site not allowed with a 403
  (readable, so that the widget can say so instead of showing a blank box);
- `/widget/` may be framed only by them (`Content-Security-Policy: frame-ancestors`), so a site
  that builds the frame itself gets one the browser refuses to show;
- the chat socket admits their pages' Origin, beside ALLOWED_HOSTS; the staff inbox's socket
  does not (its pages are this site's alone).

The frame's own socket comes from this site's origin, so it passes the socket's check
whatever page holds the frame: `frame-ancestors` is what decides where the chat may appear.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urljoin

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.templatetags.static import static

from knowledge.profile import Profile

WIDGET_SCRIPT = "widget/widget.js"
NOT_ALLOWED = "This website may not show our chat."


def allowed_origins() -> list[str]:
    """The other sites that may embed the chat (CHAT_ALLOWED_ORIGINS), as origins."""
    return list(settings.CHAT_ALLOWED_ORIGINS)


def may_embed(origin: str, own_origin: str) -> bool:
    """Whether a page of ``origin`` may show the chat served at ``own_origin``."""
    return origin == own_origin or origin in allowed_origins()


def frame_ancestors() -> str:
    """The `frame-ancestors` directive of the embedded chat page."""
    return " ".join(["frame-ancestors", "'self'", *allowed_origins()])


def socket_origins() -> list[str]:
    """Origin patterns the chat socket admits: ALLOWED_HOSTS (any scheme and port, as Channels'
    AllowedHostsOriginValidator matches them) and the sites that embed the widget."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]  # what Django answers to then
    return hosts + allowed_origins()


class ChatOriginValidator(OriginValidator):
    """Channels' OriginValidator for the chat socket, with `socket_origins()` read at each
    handshake (so that a test's settings apply to the application built at import)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    @property
    def allowed_origins(self) -> list[str]:  # type: ignore[override]
        return socket_origins()


def widget_config(profile: Profile) -> dict[str, str]:
    """What the widget shows before it opens the chat: the business's names and colour."""
    return {
        "business_name": profile.business_name,
        "assistant_name": profile.assistant_name,
        "colour": profile.colour,
    }


def script_url(own_origin: str) -> str:
    """The widget script's absolute URL (STATIC_URL may already name another host)."""
    return urljoin(own_origin + "/", static(WIDGET_SCRIPT))


def snippet(own_origin: str) -> str:
    """The tag a business pastes into its pages."""
    return (
        f'<script src="{escape(script_url(own_origin))}" '
        f'data-chatbot-origin="{escape(own_origin)}" async></script>'
    )

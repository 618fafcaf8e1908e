"""Owner tokens: who owns the conversations of a chat inside another site's frame.

The chat page keeps its customer in the session cookie. Inside the widget's frame on another
site the cookie is a third-party one: browsers refuse to store it (SameSite=Lax, the default),
or block or partition third-party cookies altogether (Safari, Firefox, Chrome's settings). So the
embedded chat page also hands its anonymous session to the page as a signed token, which the
page sends with each connection (`/ws/chat/?owner=<token>`) and the widget keeps for the tab on
the business's page (`static/widget/widget.js`): a reconnect, or the widget on the business's
next page, resumes the same conversation.

A token names an anonymous session only (it is never issued to a logged-in user, and it never
logs anyone in); it is as good as that session's cookie for the chat, and expires with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.contrib.sessions.backends.base import SessionBase

SALT = "conversations.owner_token"
MAX_TOKEN_CHARS = 200  # a session key (32) signed with a timestamp is about 100


def issue_owner_token(session_key: str) -> str:
    """A token for the anonymous session ``session_key``."""
    return signing.dumps(session_key, salt=SALT, compress=False)


def session_from_owner_token(
    token: str | None, user: AbstractBaseUser | AnonymousUser | None
) -> SessionBase | None:
    """The session ``token`` names, for an anonymous ``user``; None when there is no valid token
    (then the connection's own session, from the cookie, is the owner)."""
    if not token or len(token) > MAX_TOKEN_CHARS or (user is not None and user.is_authenticated):
        return None
    try:
        session_key = signing.loads(token, salt=SALT, max_age=settings.SESSION_COOKIE_AGE)
    except signing.BadSignature:  # tampered with, or expired (SignatureExpired)
        return None
    if not isinstance(session_key, str):
        return None
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)

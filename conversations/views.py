from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from conversations.handoff import ANSWER_CUSTOMERS
from conversations.models import Feedback
from knowledge.profile import current_profile

# The survey after a person closed the conversation: Satisfaction.score's 1 to 5, worded.
SATISFACTION_SCORES = [
    (1, "Very unhappy"),
    (2, "Unhappy"),
    (3, "Okay"),
    (4, "Happy"),
    (5, "Very happy"),
]


def chat_context() -> dict[str, Any]:
    """What the chat's template needs, on the chat page and in the widget's frame."""
    return {
        "reasons": Feedback.Reason.choices,
        "satisfaction_scores": SATISFACTION_SCORES,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "max_comment_chars": settings.CHAT_MAX_COMMENT_CHARS,
        "profile": current_profile(),
    }


@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page. Makes sure the browser has a session: it owns the conversations."""
    if request.session.session_key is None:
        request.session.save()
    return render(request, "conversations/chat.html", chat_context())


@staff_member_required
def inbox_page(request: HttpRequest) -> HttpResponse:
    """The staff inbox: conversations handed to a person, over the `/ws/inbox/` socket.

    Anyone but active staff is sent to the admin's login (the socket refuses them too); staff
    without the `answer_customers` permission are told they need it (403)."""
    if not request.user.has_perm(ANSWER_CUSTOMERS):
        return HttpResponseForbidden(
            "Answering customers needs the permission “Can answer customers in the staff "
            "inbox”: ask an administrator to give it to you (admin › Users)."
        )
    return render(
        request,
        "conversations/inbox.html",
        {
            "ws_path": "/ws/inbox/",
            "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "profile": current_profile(),
        },
    )

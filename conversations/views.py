from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from conversations.models import Feedback


@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page. Makes sure the browser has a session: it owns the conversations."""
    if request.session.session_key is None:
        request.session.save()
    return render(
        request,
        "conversations/chat.html",
        {
            "reasons": Feedback.Reason.choices,
            "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        },
    )

"""The chat widget's pages (docs/widget.md): the chat in another site's frame, the widget's
settings as JSON, and the snippet for staff to paste. The rules are `conversations.widget`'s."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_safe

from conversations import widget
from conversations.owner_tokens import issue_owner_token
from conversations.views import chat_context
from knowledge.profile import current_profile


@never_cache  # it carries the customer's owner token
@xframe_options_exempt  # framing is ruled by its frame-ancestors instead
@require_safe
def embedded_chat(request: HttpRequest) -> HttpResponse:
    """The chat in the widget's frame: the chat page in a compact layout, which only this site
    and CHAT_ALLOWED_ORIGINS may frame. An anonymous customer's session goes to the page as an
    owner token too (`conversations.owner_tokens`): no cookie may reach a frame on another site.
    """
    owner_token = ""
    if not request.user.is_authenticated:
        if request.session.session_key is None:
            request.session.save()
        owner_token = issue_owner_token(request.session.session_key)
    response = render(
        request, "conversations/widget.html", {**chat_context(), "owner_token": owner_token}
    )
    response["Content-Security-Policy"] = widget.frame_ancestors()
    return response


@require_safe
def widget_config(request: HttpRequest) -> JsonResponse:
    """The widget's first request: the business's names and colour, readable by the sites that
    may embed the chat (CORS); any other site reads a 403 that says so."""
    origin = request.headers.get("Origin")
    if origin is not None and not widget.may_embed(origin, _own_origin(request)):
        response = JsonResponse(
            {"error": "origin_not_allowed", "detail": widget.NOT_ALLOWED}, status=403
        )
        response["Access-Control-Allow-Origin"] = "*"
    else:
        response = JsonResponse(widget.widget_config(current_profile()))
        if origin is not None:
            response["Access-Control-Allow-Origin"] = origin
    patch_vary_headers(response, ["Origin"])
    return response


@staff_member_required
def widget_install_page(request: HttpRequest) -> HttpResponse:
    """For staff: the snippet to paste into the business's site, the sites allowed to embed the
    chat, and the widget itself on this page as a preview."""
    own_origin = _own_origin(request)
    return render(
        request,
        "conversations/widget_install.html",
        {
            "snippet": widget.snippet(own_origin),
            "script_url": widget.script_url(own_origin),
            "own_origin": own_origin,
            "allowed_origins": widget.allowed_origins(),
            "profile": current_profile(),
        },
    )


def _own_origin(request: HttpRequest) -> str:
    """This site's origin as the browser sees it (scheme, host and any port)."""
    return f"{request.scheme}://{request.get_host()}"

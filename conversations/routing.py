"""The websockets, each behind its check of the browser's Origin: the chat's also admits the
sites that embed the widget (CHAT_ALLOWED_ORIGINS, `conversations.widget`); the staff inbox's
only this site's own hosts (ALLOWED_HOSTS)."""

from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from conversations.consumers import ChatConsumer
from conversations.inbox_consumer import InboxConsumer
from conversations.widget import ChatOriginValidator

websocket_urlpatterns = [
    path("ws/chat/", ChatOriginValidator(ChatConsumer.as_asgi())),
    path("ws/inbox/", AllowedHostsOriginValidator(InboxConsumer.as_asgi())),
]

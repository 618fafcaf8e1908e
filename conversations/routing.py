from django.urls import path

from conversations.consumers import ChatConsumer
from conversations.inbox_consumer import InboxConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    path("ws/inbox/", InboxConsumer.as_asgi()),
]

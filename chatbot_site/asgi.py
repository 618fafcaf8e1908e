"""ASGI entry point: HTTP goes to Django, websockets to the chat and inbox consumers.

get_asgi_application() must run before anything imports models or consumers.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from conversations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Each route checks the browser's Origin itself (conversations/routing.py): the chat
        # socket admits ALLOWED_HOSTS and CHAT_ALLOWED_ORIGINS, the inbox ALLOWED_HOSTS only.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)

from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    """Placeholder; implemented in conversations/consumers.py by the protocol work."""

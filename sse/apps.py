from django.apps import AppConfig


class SSEConfig(AppConfig):
    name = "sse"
    verbose_name = "Server-Sent Events"

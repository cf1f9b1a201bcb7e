from django.apps import AppConfig


class SSEConfig(AppConfig):
    name = "sse"
    verbose_name = "Server-Sent Events"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)

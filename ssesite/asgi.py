"""
ASGI entry point: the event streams, and Django for every other path.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ssesite.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs the app registry)

from sse.routing import EventStreamRouter  # noqa: E402

application = ProtocolTypeRouter({"http": EventStreamRouter(fallback=django_application)})

"""
ASGI entry point: the event streams, and Django for every other path.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ssesite.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs the app registry)
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from sse.middleware import SessionAuthMiddleware  # noqa: E402
from sse.routing import EventStreamRouter  # noqa: E402

# runsse is the only server of the stand-alone service, so it also serves
# the static files of the admin, from the apps' static directories and
# without collectstatic. The handler serves them whether DEBUG is on or off.
django_application = ASGIStaticFilesHandler(django_application)

# The auth middleware puts the user of the Django session cookie into the
# scope, for browsers of the admin's users on the same origin.
application = ProtocolTypeRouter({"http": SessionAuthMiddleware(EventStreamRouter(fallback=django_application))})

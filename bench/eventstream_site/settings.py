"""
Django settings of the benchmark's django-eventstream server.

Only what django-eventstream's README setup needs: its app and daphne in
``INSTALLED_APPS``, ``ASGI_APPLICATION``, and a channel manager. No
``EVENTSTREAM_STORAGE_CLASS`` is set, so, as by default, events are not
written to a database and streams carry no ``id:``. No ``EVENTSTREAM_REDIS``
is set either: the bridge calls ``send_event()`` in the server process.
"""

import os

# Both are set by bench.servers.eventstream and read once at start-up.
BENCH_NATS_URL = os.environ["BENCH_NATS_URL"]
BENCH_JWT_SECRET = os.environ["BENCH_JWT_SECRET"]

# django-eventstream signs the es-meta parameter of GRIP requests with it.
# No GRIP proxy is in front of this server, so a fixed value is enough.
SECRET_KEY = "bench-eventstream-" + "0123456789abcdef" * 3
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "daphne",
    "django_eventstream",
]

# Only the token check. runsse's stream path runs no Django middleware
# either, so neither server pays for sessions or CSRF checks.
MIDDLEWARE = [
    "bench.eventstream_site.auth.RevaTokenMiddleware",
]

ROOT_URLCONF = "bench.eventstream_site.urls"
ASGI_APPLICATION = "bench.eventstream_site.asgi.application"

# Nothing reads the database while no event storage is configured.
DATABASES = {}

EVENTSTREAM_CHANNELMANAGER_CLASS = "bench.eventstream_site.channelmanager.UserChannelManager"

USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}

"""
The ASGI application of the benchmark's django-eventstream server, for
``daphne bench.eventstream_site.asgi:application`` as django-eventstream's
README deploys it.

Daphne sends no ASGI lifespan events, so the NATS bridge starts when
daphne's Twisted reactor, which runs the asyncio event loop, starts.
"""

import asyncio
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.eventstream_site.settings")

# daphne.server installs Twisted's asyncio reactor, so it must be imported
# before anything imports twisted.internet.reactor.
import daphne.server  # noqa: E402, F401
from django.core.asgi import get_asgi_application  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402

application = get_asgi_application()

from .bridge import bridge  # noqa: E402  (needs the settings)


def _stop_bridge():
    return Deferred.fromFuture(asyncio.ensure_future(bridge.stop()))


reactor.callWhenRunning(bridge.start)
reactor.addSystemEventTrigger("before", "shutdown", _stop_bridge)

"""
A minimal Django project that serves the benchmark's streams with
django-eventstream, set up as its README describes, on daphne.

* ``settings``: daphne and django_eventstream as the only apps, no event
  storage (django-eventstream's default), and the channel manager below.
* ``auth``: a middleware that authenticates ``/sse`` requests with the
  reva ``x-access-token`` JWT, as runsse does.
* ``channelmanager``: every stream reads ``user-<id>`` and ``all``.
* ``bridge``: a JetStream pull consumer on ``main-queue`` that calls
  ``django_eventstream.send_event()`` for each ``SendSSE`` event.
* ``asgi``: the application that ``daphne bench.eventstream_site.asgi:application``
  serves; it starts the bridge once daphne's reactor runs.

The settings read ``BENCH_NATS_URL`` and ``BENCH_JWT_SECRET`` from the
environment; ``bench.servers.eventstream`` sets both.
"""

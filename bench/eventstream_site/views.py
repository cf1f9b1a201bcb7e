"""The readiness view of the benchmark's django-eventstream server."""

from django.http import HttpResponse

from .bridge import bridge


async def ready(request):
    """Return 200 once the bridge's JetStream consumer exists, 503 before."""
    return HttpResponse(status=200 if bridge.ready else 503)

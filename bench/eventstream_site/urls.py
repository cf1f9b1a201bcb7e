"""
``/sse``: the streams, served by django-eventstream's own view. Its
channels come from ``UserChannelManager``, not from view keywords.
``/ready``: readiness for ``bench.servers.ServerProcess``.
"""

import django_eventstream
from django.urls import include, path

from .views import ready

urlpatterns = [
    path("sse", include(django_eventstream.urls)),
    path("ready", ready),
]

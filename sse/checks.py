"""
Django system checks of the sse app, run by ``manage.py check`` and before
most management commands.

Ids: ``sse.E001`` invalid configuration, ``sse.E002`` no channel layer,
``sse.W001`` missing JWT secret, ``sse.W002`` a channel layer that loses
events silently.
"""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import load_config
from .exceptions import ConfigurationError

LOSSY_LAYERS = {
    "channels.layers.InMemoryChannelLayer": "sse.layers.InMemoryChannelLayer",
}


@register(Tags.compatibility)
def check_configuration(app_configs, **kwargs):
    """Report an invalid value, or a missing JWT secret, in the SSE configuration."""
    try:
        config = load_config(overrides=getattr(settings, "SSE", None))
    except ConfigurationError as error:
        return [
            Error(
                str(error),
                hint="Fix the value of the environment variable or setting that the message names.",
                id="sse.E001",
            )
        ]

    if not config.jwt_secret:
        return [
            Warning(
                "SSE_JWT_SECRET (or OCIS_JWT_SECRET) is not set, so runsse will not start.",
                hint="Set it to the secret that signs the x-access-token JWTs, the same value as in oCIS.",
                id="sse.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_channel_layer(app_configs, **kwargs):
    """Report a missing channel layer, or one that drops events without telling anyone."""
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    if "default" not in layers:
        return [
            Error(
                "CHANNEL_LAYERS has no 'default' layer, so streams cannot receive events.",
                hint="Use {'default': {'BACKEND': 'sse.layers.InMemoryChannelLayer'}} for one process.",
                id="sse.E002",
            )
        ]

    backend = layers["default"].get("BACKEND", "")
    if backend in LOSSY_LAYERS:
        return [
            Warning(
                f"The channel layer {backend} drops events for a full channel without telling anyone.",
                hint=f"Use {LOSSY_LAYERS[backend]}, which ends such a stream and counts the dropped events.",
                id="sse.W002",
            )
        ]
    return []

"""
The channel manager, django-eventstream's extension point for choosing
and authorizing the channels of a stream.
"""

from django_eventstream.channelmanager import DefaultChannelManager

BROADCAST_CHANNEL = "all"


def user_channel(user_id):
    """Return the channel of the events addressed to ``user_id``."""
    return f"user-{user_id}"


class UserChannelManager(DefaultChannelManager):
    """Let each authenticated stream read its own user's channel and the broadcast channel."""

    def get_channels_for_request(self, request, view_kwargs):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return set()
        return {user_channel(user.pk), BROADCAST_CHANNEL}

    def can_read_channel(self, user, channel):
        if user is None:
            return False
        return channel == BROADCAST_CHANNEL or channel == user_channel(user.pk)

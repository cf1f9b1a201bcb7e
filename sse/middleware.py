"""
ASGI middleware for the stream endpoints.
"""

from channels.auth import AuthMiddlewareStack


class SessionAuthMiddleware:
    """
    Channels' ``AuthMiddlewareStack``, applied only to requests that bring
    no token of their own.

    The auth stack loads the session and the user in a worker thread for
    every request. Requests with ``x-access-token``, ``Authorization`` or
    a ``ticket`` parameter never use the session, so they skip that cost,
    which adds up when thousands of clients reconnect at once.
    """

    def __init__(self, inner):
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not has_own_credentials(scope):
            return await self.with_session(scope, receive, send)
        return await self.inner(scope, receive, send)


def has_own_credentials(scope):
    for name, _ in scope.get("headers", ()):
        if name in (b"x-access-token", b"authorization"):
            return True
    return b"ticket=" in scope.get("query_string", b"")

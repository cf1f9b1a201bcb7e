"""
The endpoint that issues stream tickets: ``POST <root>/sse/ticket``.
"""

import json
import logging

from channels.generic.http import AsyncHttpConsumer

from . import cors
from .authentication import authenticate
from .conf import get_config
from .exceptions import AuthenticationFailed
from .tickets import TICKET_TTL_SECONDS, issue_ticket

logger = logging.getLogger(__name__)


class TicketConsumer(AsyncHttpConsumer):
    """
    Respond to an authenticated POST with ``{"ticket": ..., "expires_in": 30}``.

    The request authenticates like a stream request, except that a ticket
    cannot buy another ticket. Browsers on another origin need ``POST`` in
    ``SSE_CORS_ALLOW_METHODS``.
    """

    async def handle(self, body):
        if cors.is_preflight(self.scope):
            await self.send_response(204, b"", headers=cors.preflight_headers(self.scope))
            return
        if self.scope["method"] != "POST":
            await self.respond(405, b"", [(b"allow", b"POST")])
            return

        config = get_config()
        try:
            identity = authenticate(self.scope, config.jwt_secret, allow_ticket=False)
        except AuthenticationFailed as error:
            body = json.dumps({"code": error.code, "detail": error.detail}).encode()
            await self.respond(401, body, [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")])
            return

        ticket = issue_ticket(identity.user_id, config.jwt_secret)
        body = json.dumps({"ticket": ticket, "expires_in": TICKET_TTL_SECONDS}).encode()
        await self.respond(200, body, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")])

    async def respond(self, status, body, headers):
        headers = [*headers, (b"content-length", str(len(body)).encode()), *cors.response_headers(self.scope)]
        await self.send_response(status, body, headers=headers)

"""
Short-lived, single-use stream tickets for clients that cannot send
headers, such as the browser's native ``EventSource``.

A client that has a token POSTs to ``<root>/sse/ticket`` and gets a
ticket, then opens ``<root>/sse?ticket=...``. A ticket is signed with
``SSE_JWT_SECRET``, names the user, expires after ``TICKET_TTL_SECONDS``
and is accepted once, so long-lived tokens never appear in URLs or access
logs.
"""

import secrets
import time

from django.core import signing

from .exceptions import AuthenticationFailed

TICKET_TTL_SECONDS = 30
_SALT = "sse.ticket"

# Nonces of redeemed tickets, with the time they expire, so that each
# ticket is accepted once.
# NOTE: this record is per process. With several processes behind a load
# balancer, a ticket could be redeemed once on each within its 30 seconds.
_redeemed = {}


def issue_ticket(user_id, secret):
    """Return a new ticket for ``user_id``."""
    payload = {"user": user_id, "nonce": secrets.token_urlsafe(12)}
    return signing.TimestampSigner(key=secret, salt=_SALT).sign_object(payload, compress=False)


def redeem_ticket(ticket, secret):
    """Return the user id of ``ticket`` and mark it used; raises ``AuthenticationFailed``."""
    try:
        payload = signing.TimestampSigner(key=secret, salt=_SALT).unsign_object(ticket, max_age=TICKET_TTL_SECONDS)
    except signing.SignatureExpired:
        raise AuthenticationFailed("ticket_expired", "The ticket has expired.") from None
    except (signing.BadSignature, ValueError):
        raise AuthenticationFailed("ticket_invalid", "The ticket is invalid.") from None

    now = time.monotonic()
    for nonce, expires in list(_redeemed.items()):
        if expires < now:
            del _redeemed[nonce]
    if payload.get("nonce") in _redeemed:
        raise AuthenticationFailed("ticket_used", "The ticket was already used.")
    _redeemed[payload.get("nonce")] = now + TICKET_TTL_SECONDS
    return str(payload["user"])

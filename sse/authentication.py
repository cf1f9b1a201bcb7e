"""
Authentication of stream requests, tried in this order:

* ``x-access-token``: the reva token that the oCIS proxy mints for each
  request, an HS256 JWT signed with ``SSE_JWT_SECRET`` whose user id is
  ``user.id.opaque_id``. It must carry a scope whose key starts with
  ``user``; public-link and other restricted scopes are rejected.
* ``Authorization: Bearer``: an access token issued by
  djangorestframework-simplejwt, for Django projects that mint their own.
* ``?ticket=``: a single-use stream ticket (see ``sse.tickets``), on the
  stream paths only.
* The Django session cookie, when ``sse.middleware.SessionAuthMiddleware`` put an
  authenticated ``user`` into the scope, for same-origin requests only.

``x-access-token`` wins over ``Authorization`` because the oCIS proxy
forwards the browser's OpenID Connect bearer token alongside it.
"""

from typing import NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

import jwt

from .exceptions import AuthenticationFailed
from .tickets import redeem_ticket

# oCIS (golang-jwt v5) allows this much clock skew on exp and nbf.
REVA_LEEWAY_SECONDS = 5


class Identity(NamedTuple):
    """
    The user a request is authenticated as, and the epoch second from which
    its token is rejected (its expiry plus the leeway), or ``None`` when the
    token does not expire.
    """

    user_id: str
    expires_at: Optional[float] = None


def header(scope, name):
    """Return the first value of header ``name`` (lower-case bytes) as text, or ``None``."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def authenticate(scope, jwt_secret, *, allow_ticket=True):
    """
    Return the ``Identity`` that the request in ``scope`` is authenticated as.

    Raises ``AuthenticationFailed`` when no token is present or the token
    is invalid, expired or wrongly scoped.
    """
    reva_token = header(scope, b"x-access-token")
    if reva_token is not None:
        claims = _validated_reva_claims(reva_token.strip(), jwt_secret)
        return Identity(_opaque_id(claims), _rejected_from(claims, REVA_LEEWAY_SECONDS))

    authorization = header(scope, b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return authenticate_simplejwt_token(credentials.strip())

    ticket = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    if ticket and allow_ticket:
        # The stream may outlive the ticket: the ticket only opens it.
        return Identity(redeem_ticket(ticket[0], jwt_secret))

    user = scope.get("user")
    if user is not None and user.is_authenticated and is_same_origin(scope):
        return Identity(str(user.pk))

    raise AuthenticationFailed("not_authenticated", "Authentication credentials were not provided.")


def is_same_origin(scope):
    """
    Whether the request comes from a page of this host, or from no page.

    Browsers attach cookies to cross-origin requests too. Accepting the
    session cookie from any origin would let every website that the user
    visits read the user's events.
    """
    origin = header(scope, b"origin")
    if origin is None:
        return True
    host = header(scope, b"host")
    return host is not None and urlsplit(origin).netloc.lower() == host.strip().lower()


def authenticate_reva_token(token, jwt_secret):
    """Validate a reva ``x-access-token`` and return ``user.id.opaque_id``."""
    return _opaque_id(_validated_reva_claims(token, jwt_secret))


def _validated_reva_claims(token, jwt_secret):
    claims = _decode_reva_token(token, jwt_secret)
    _check_user_scope(claims)
    return claims


def _rejected_from(claims, leeway):
    expires_at = claims.get("exp")
    if not isinstance(expires_at, (int, float)):
        return None
    return float(expires_at) + leeway


def _decode_reva_token(token, jwt_secret):
    try:
        return jwt.decode(
            token,
            jwt_secret,
            # Pinning the algorithm rejects "none" and tokens whose header
            # names an algorithm the secret was never meant for.
            algorithms=["HS256"],
            leeway=REVA_LEEWAY_SECONDS,
            # reva sets aud to "reva" or ["reva"] and iss to the identity
            # provider; oCIS checks neither.
            options={"verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token_expired", "The token has expired.") from None
    except jwt.InvalidTokenError:
        raise AuthenticationFailed("token_invalid", "The token is invalid.") from None


def _check_user_scope(claims):
    scopes = claims.get("scope")
    if isinstance(scopes, dict) and any(str(key).startswith("user") for key in scopes):
        return
    raise AuthenticationFailed("token_scope_invalid", "The token has no user scope.")


def _opaque_id(claims):
    user = claims.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    opaque_id = user_id.get("opaque_id") if isinstance(user_id, dict) else None
    if isinstance(opaque_id, str) and opaque_id:
        return opaque_id
    raise AuthenticationFailed("token_user_missing", "The token names no user.")


def authenticate_simplejwt_token(token):
    """Validate a simplejwt access token and return the ``Identity`` of its ``USER_ID_CLAIM``."""
    # Imported here because simplejwt reads the Django settings on import.
    from rest_framework_simplejwt.exceptions import TokenError
    from rest_framework_simplejwt.settings import api_settings
    from rest_framework_simplejwt.tokens import AccessToken

    try:
        validated = AccessToken(token)
    except TokenError:
        raise AuthenticationFailed("token_invalid", "The token is invalid or expired.") from None

    user_id = validated.get(api_settings.USER_ID_CLAIM)
    if user_id is None or user_id == "":
        raise AuthenticationFailed("token_user_missing", "The token names no user.")
    leeway = api_settings.LEEWAY
    leeway = leeway.total_seconds() if hasattr(leeway, "total_seconds") else float(leeway)
    return Identity(str(user_id), _rejected_from(validated.payload, leeway))

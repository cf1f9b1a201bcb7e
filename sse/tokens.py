"""
Minting of reva-style ``x-access-token`` JWTs, for trying the service and
for tests. In production the oCIS proxy mints them.
"""

import base64
import time

import jwt


def mint_reva_token(user_id, jwt_secret, ttl_seconds=3600, *, scope=None, now=None):
    """Return an HS256 token shaped like the ones the oCIS proxy forwards."""
    now = int(time.time() if now is None else now)
    if scope is None:
        resource = base64.b64encode(b'{"path":"/"}').decode()
        scope = {"user": {"resource": {"decoder": "json", "value": resource}, "role": 1}}
    claims = {
        "aud": ["reva"],
        "iss": "sse",
        "iat": now,
        "exp": now + int(ttl_seconds),
        "user": {
            "id": {"idp": "sse", "opaque_id": user_id, "type": 1},
            "username": user_id,
        },
        "scope": scope,
    }
    return jwt.encode(claims, jwt_secret, algorithm="HS256")

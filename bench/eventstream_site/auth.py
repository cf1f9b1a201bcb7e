"""
Authentication of stream requests with the reva ``x-access-token`` JWT,
checked by the same function as in runsse.
"""

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import JsonResponse

from sse.authentication import authenticate_reva_token
from sse.exceptions import AuthenticationFailed

STREAM_PATH_PREFIX = "/sse"


class TokenUser:
    """
    The user of a valid token, in place of a database user.

    django-eventstream reads ``is_authenticated`` and ``pk`` of
    ``request.user``, and hands the object to the channel manager.
    """

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user_id):
        self.pk = self.id = user_id

    def __repr__(self):
        return f"TokenUser({self.pk!r})"


class RevaTokenMiddleware:
    """
    Set ``request.user`` from ``x-access-token`` on the stream paths, and
    reject requests there without a valid token with 401, as runsse does.
    Other paths, such as ``/ready``, pass unchanged.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        if request.path.startswith(STREAM_PATH_PREFIX):
            token = request.headers.get("x-access-token", "").strip()
            try:
                if not token:
                    raise AuthenticationFailed("not_authenticated", "Authentication credentials were not provided.")
                request.user = TokenUser(authenticate_reva_token(token, settings.BENCH_JWT_SECRET))
            except AuthenticationFailed as error:
                response = JsonResponse({"code": error.code, "detail": error.detail}, status=401)
                response["WWW-Authenticate"] = "Bearer"
                return response
        return await self.get_response(request)

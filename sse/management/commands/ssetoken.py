from django.core.management.base import BaseCommand, CommandError

from sse.conf import get_config
from sse.parsing import parse_duration
from sse.exceptions import SSEError
from sse.tokens import mint_reva_token


class Command(BaseCommand):
    help = "Print an x-access-token for USER_ID, signed with SSE_JWT_SECRET, to try the service."

    def add_arguments(self, parser):
        parser.add_argument("user_id", help="The user id (user.id.opaque_id in the token).")
        parser.add_argument(
            "--ttl",
            default="1h",
            help="How long the token is valid, as a Go duration such as 30m or 1h (default: 1h).",
        )

    def handle(self, *args, **options):
        try:
            ttl = parse_duration(options["ttl"])
        except ValueError as error:
            raise CommandError(f"--ttl={options['ttl']!r} is invalid: {error}") from None
        if ttl <= 0:
            raise CommandError(f"--ttl={options['ttl']!r} is invalid: the token must be valid for more than 0s")

        try:
            config = get_config()
        except SSEError as error:
            raise CommandError(str(error)) from None
        if not config.jwt_secret:
            raise CommandError("SSE_JWT_SECRET (or OCIS_JWT_SECRET) is not set; the token cannot be signed.")

        self.stdout.write(mint_reva_token(options["user_id"], config.jwt_secret, ttl))

from django.core.management.base import BaseCommand, CommandError

from sse import __version__
from sse.conf import get_config
from sse.exceptions import SSEError


class Command(BaseCommand):
    help = (
        "Run the Server-Sent Events service: the stream server on SSE_HTTP_ADDR, "
        "the debug server on SSE_DEBUG_ADDR and the bridge from NATS JetStream."
    )

    def get_version(self):
        # BaseCommand's --version prints Django's version, but the operator
        # of this service needs the version of the service.
        return __version__

    def add_arguments(self, parser):
        parser.add_argument(
            "--embedded-nats",
            action="store_true",
            help=(
                "Also start a nats-server with JetStream on the first SSE_EVENTS_ENDPOINT, "
                "with a temporary store that is deleted on exit."
            ),
        )
        roles = parser.add_mutually_exclusive_group()
        roles.add_argument(
            "--http-only",
            action="store_true",
            help="Serve streams but run no bridge; needs SSE_CHANNEL_LAYER_URL and bridges elsewhere.",
        )
        roles.add_argument(
            "--bridge-only",
            action="store_true",
            help="Run only the bridge from NATS to the channel layer; needs SSE_CHANNEL_LAYER_URL.",
        )

    def handle(self, *args, **options):
        # Imported here: the import installs Twisted's asyncio reactor,
        # which other management commands do not need.
        from channels.routing import get_default_application

        from sse.log import configure_logging
        from sse.server import Service

        try:
            config = get_config()
        except SSEError as error:
            raise CommandError(str(error)) from None
        if not config.jwt_secret:
            raise CommandError(
                "SSE_JWT_SECRET (or OCIS_JWT_SECRET) is not set; set it to the secret "
                "that signs the x-access-token JWTs, the same value as in oCIS."
            )

        # Loading the ASGI application may run django.setup() again, which
        # re-applies settings.LOGGING; the service's own logging comes after.
        application = get_default_application()
        try:
            configure_logging(config)
            Service(
                config,
                application,
                embedded_nats=options["embedded_nats"],
                serve_http=not options["bridge_only"],
                run_bridge=not options["http_only"],
            ).run()
        except SSEError as error:
            raise CommandError(str(error)) from None

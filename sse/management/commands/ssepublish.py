import asyncio

from django.core.management.base import BaseCommand, CommandError

from sse.bridge import SUBJECT
from sse.conf import get_config
from sse.exceptions import SSEError
from sse.publishing import apublish


class Command(BaseCommand):
    help = "Publish one SendSSE event on NATS in the oCIS wire format."

    def add_arguments(self, parser):
        parser.add_argument("user_ids", nargs="+", metavar="USER_ID", help="Recipients; 'all' means every user.")
        parser.add_argument("--type", required=True, help="The event type, such as userlog-notification.")
        parser.add_argument("--message", required=True, help="The event data, sent as it is.")

    def handle(self, *args, **options):
        try:
            config = get_config()
        except SSEError as error:
            raise CommandError(str(error)) from None

        try:
            sequence = asyncio.run(apublish(options["user_ids"], options["type"], options["message"]))
        except ValueError as error:
            raise CommandError(f"--type is invalid: {error}") from None
        except Exception as error:
            reason = str(error) or type(error).__name__
            servers = ",".join(config.events_endpoint)
            raise CommandError(f"Publishing to NATS at {servers} failed: {reason}") from None
        self.stdout.write(f"Published to {SUBJECT} as stream sequence {sequence}.")

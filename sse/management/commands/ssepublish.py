import asyncio

import nats
from django.core.management.base import BaseCommand, CommandError

from sse.bridge import SUBJECT, nats_connect_options
from sse.conf import get_config
from sse.exceptions import SSEError
from sse.wire import encode_envelope


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

        data = encode_envelope(options["user_ids"], options["type"], options["message"])
        try:
            sequence = asyncio.run(publish(config, data))
        except Exception as error:
            reason = str(error) or type(error).__name__
            servers = ",".join(config.events_endpoint)
            raise CommandError(f"Publishing to NATS at {servers} failed: {reason}") from None
        self.stdout.write(f"Published to {SUBJECT} as stream sequence {sequence}.")


async def ignore_error(error):
    pass


async def publish(config, data):
    options = nats_connect_options(config)
    # Two attempts per server, then nats.connect raises NoServersError.
    # The callback keeps nats-py from printing each attempt's traceback.
    options.update(max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=ignore_error)
    connection = await nats.connect(**options)
    try:
        acknowledgement = await connection.jetstream().publish(SUBJECT, data, timeout=5)
    finally:
        await connection.close()
    return acknowledgement.seq

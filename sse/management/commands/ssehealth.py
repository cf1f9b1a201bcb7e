import http.client

from django.core.management.base import BaseCommand, CommandError

from sse import __version__
from sse.conf import get_config
from sse.exceptions import SSEError
from sse.parsing import Address


def probe_address(debug_addr):
    """Return the address of a debug server bound to ``debug_addr``, with loopback in place of an all-interfaces host."""
    if not debug_addr.all_interfaces:
        return debug_addr
    return Address("::1" if debug_addr.host == "::" else "127.0.0.1", debug_addr.port)


class Command(BaseCommand):
    help = (
        "Check the health of a running runsse: exit 0 when /healthz on SSE_DEBUG_ADDR returns 200, "
        "and 1 with the reason otherwise. For container health checks."
    )
    # A probe must not fail or slow down because of unrelated system checks.
    requires_system_checks = []

    def get_version(self):
        return __version__

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=5.0,
            help="Seconds to wait for the connection and for the response (default: 5).",
        )

    def handle(self, *args, **options):
        try:
            config = get_config()
        except SSEError as error:
            raise CommandError(str(error)) from None
        if options["timeout"] <= 0:
            raise CommandError(f"--timeout={options['timeout']!r} is invalid: it must be more than 0 seconds")

        address = probe_address(config.debug_addr)
        url = f"http://{address}/healthz"
        status, body = self.get_health(address, config, options["timeout"])
        if status != 200:
            reason = body.decode("utf-8", "replace").strip().replace("\n", "; ") or "no body"
            raise CommandError(f"The health check failed: {url} returned {status} ({reason}).")
        self.stdout.write(f"OK: {url} returned 200")

    def get_health(self, address, config, timeout):
        """Return the status and the start of the body of /healthz at ``address``. Raises ``CommandError`` when the request fails."""
        url = f"http://{address}/healthz"
        connection = http.client.HTTPConnection(address.host, address.port, timeout=timeout)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            return response.status, response.read(1024)
        except ConnectionRefusedError:
            raise CommandError(
                f"The health check failed: the connection to {url} was refused. "
                f"Is runsse running with SSE_DEBUG_ADDR={config.debug_addr}?"
            ) from None
        except TimeoutError:
            raise CommandError(f"The health check failed: {url} timed out after {timeout:g}s.") from None
        except (OSError, http.client.HTTPException) as error:
            raise CommandError(f"The health check failed: {url}: {str(error) or type(error).__name__}") from None
        finally:
            connection.close()

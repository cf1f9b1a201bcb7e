import json

from django.core.management.base import BaseCommand, CommandError

from sse.conf import SSE_FIELDS, get_config
from sse.debug import describe_config
from sse.exceptions import SSEError


def markdown_table():
    """Return the Markdown table of every setting, as the README shows it."""
    rows = [
        "| Variable | Fallback | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for config_field in SSE_FIELDS.values():
        *fallbacks, variable = config_field.metadata["env"]
        default = config_field.metadata["default"]
        rows.append(
            "| `{}` | {} | {} | {} |".format(
                variable,
                ", ".join(f"`{name}`" for name in fallbacks),
                f"`{default}`" if default else "",
                config_field.metadata["description"].replace("|", "\\|"),
            )
        )
    return "\n".join(rows) + "\n"


class Command(BaseCommand):
    help = "Print the effective SSE configuration as JSON, secrets masked, or the table of all settings."
    # An invalid configuration is exactly what this command reports itself.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--markdown",
            action="store_true",
            help="Print the Markdown table of every setting, its variables, default and meaning.",
        )

    def handle(self, *args, **options):
        if options["markdown"]:
            self.stdout.write(markdown_table(), ending="")
            return
        try:
            config = get_config()
        except SSEError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(json.dumps(describe_config(config), indent=2))

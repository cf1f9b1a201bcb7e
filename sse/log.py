"""
Log output in the formats of oCIS, which logs with zerolog.

By default every record is one JSON object per line with ``level``,
``service``, ``time`` and ``message``, plus the structured fields passed
with ``extra=``. ``SSE_LOG_PRETTY`` switches to a console format and
``SSE_LOG_COLOR`` colours it. ``SSE_LOG_FILE`` appends to a file instead of
writing to stderr; unlike oCIS, it also applies to the pretty format.
"""

import json
import logging
import sys
from datetime import datetime, timezone

from .exceptions import ConfigurationError

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

# zerolog level names and the Python levels they map to. panic and fatal
# both map to CRITICAL, which is as far as Python's levels go.
LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
LEVEL_NAMES = {
    TRACE: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
SHORT_NAMES = {"trace": "TRC", "debug": "DBG", "info": "INF", "warn": "WRN", "error": "ERR", "fatal": "FTL"}
COLOURS = {"trace": "35", "debug": "33", "info": "32", "warn": "31", "error": "1;31", "fatal": "1;31"}

# Attributes every LogRecord has; anything else came in through extra=.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def level_name(levelno):
    """Return the zerolog name of a Python level, rounding down to the nearest known one."""
    for level in sorted(LEVEL_NAMES, reverse=True):
        if levelno >= level:
            return LEVEL_NAMES[level]
    return "trace"


def structured_fields(record):
    """Return the fields passed with ``extra=`` on ``record``."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}


def _timestamp(record):
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JSONFormatter(logging.Formatter):
    """Format a record as one zerolog-style JSON object."""

    def __init__(self, service="sse", with_line=False):
        super().__init__()
        self.service = service
        self.with_line = with_line

    def format(self, record):
        entry = {
            "level": level_name(record.levelno),
            "service": self.service,
            "time": _timestamp(record),
        }
        if self.with_line:
            entry["line"] = f"{record.pathname}:{record.lineno}"
        entry.update(structured_fields(record))
        entry["logger"] = record.name
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Format a record for people: time, level, message and ``key=value`` fields."""

    def __init__(self, colour=False):
        super().__init__()
        self.colour = colour

    def format(self, record):
        level = level_name(record.levelno)
        short = SHORT_NAMES[level]
        if self.colour:
            short = f"\x1b[{COLOURS[level]}m{short}\x1b[0m"
        parts = [_timestamp(record), short, record.getMessage()]
        parts.extend(f"{key}={value}" for key, value in structured_fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(config):
    """
    Send every log record of the process to one handler in the configured
    format and level.

    Raises ``ConfigurationError`` when the log file cannot be opened.
    """
    level = LEVELS[config.log_level]
    if config.log_file:
        try:
            handler = logging.FileHandler(config.log_file, mode="a", encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(
                config.origin_of("log_file"),
                config.log_file,
                f"the file cannot be opened for appending ({error.strerror})",
            ) from None
    else:
        handler = logging.StreamHandler(sys.stderr)

    if config.log_pretty:
        handler.setFormatter(ConsoleFormatter(colour=config.log_color))
    else:
        # zerolog in oCIS adds the caller's line at info and below.
        handler.setFormatter(JSONFormatter(with_line=level <= logging.INFO))

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)

    # Django's LOGGING may have attached handlers of its own to these;
    # every record goes through the root handler instead.
    for name in ("sse", "daphne", "django", "django.server"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return handler

"""Server-Sent Events for Django, wire-compatible with the oCIS sse service."""

__version__ = "0.1.0"

"""Server-Sent Events for Django, wire-compatible with the oCIS sse service."""

__version__ = "0.1.0"

__all__ = ["apublish", "asend_local", "publish", "send_local"]


def __getattr__(name):
    # Imported on first use: the publishing helpers need the Django settings,
    # which are not ready while Django imports this package as an app.
    if name in __all__:
        from . import publishing as module

        return getattr(module, name)
    raise AttributeError(f"module 'sse' has no attribute {name!r}")

"""
Configuration of the sse app, resolved once into an immutable object.

Every value comes, in rising precedence, from the built-in default, the
``SSE`` dict in the Django settings, the ``OCIS_*`` environment variable and
the ``SSE_*`` environment variable. The keys of ``SSE`` are the field names
in upper case, such as ``"KEEPALIVE_INTERVAL"``. The environment variables
are the ones the oCIS ``sse`` service reads, and an empty one counts as
unset.

oCIS silently keeps the default when it cannot parse a value; this module
raises ``ConfigurationError`` instead, naming the variable, the value and
what is allowed. This is the only module that reads the environment or
``settings.SSE``.
"""

import functools
import os
from dataclasses import dataclass, field, fields

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .exceptions import ConfigurationError
from .parsing import (
    Address,
    parse_address,
    parse_bool,
    parse_channel_layer_url,
    parse_count,
    parse_duration,
    parse_list,
    parse_log_level,
    parse_nats_servers,
    parse_origins,
    parse_positive_duration,
    parse_readable_file,
    parse_registry,
    parse_root,
    parse_size,
    parse_string,
    parse_tracing_type,
)

__all__ = ["Address", "SSEConfig", "SSE_FIELDS", "get_config", "load_config", "reload_config"]

CORS_DEFAULT_HEADERS = (
    "Authorization,Origin,Content-Type,Accept,X-Requested-With,X-Request-Id,Ocs-Apirequest,"
    "Last-Event-ID,X-Access-Token"
)


def optional(parse):
    """Wrap ``parse`` so that an empty text means "not set" and yields ``""``."""

    def parse_optional(text):
        return parse(text) if text.strip() else ""

    parse_optional.__name__ = f"optional_{parse.__name__}"
    return parse_optional


def setting(env, default, parse, description, *, secret=False):
    """
    Declare one configuration field.

    ``env`` lists the environment variables from lowest to highest
    precedence, so the service-specific ``SSE_*`` name comes last.
    ``default`` is text in the format of the environment variable.
    """
    metadata = {
        "env": tuple(env),
        "default": default,
        "parse": parse,
        "description": description,
        "secret": secret,
    }
    return field(default=parse(default), metadata=metadata)


@dataclass(frozen=True)
class SSEConfig:
    """The effective configuration; build it with ``load_config``."""

    # Logging
    log_level: str = setting(
        ["OCIS_LOG_LEVEL", "SSE_LOG_LEVEL"], "error", parse_log_level,
        "The log level: panic, fatal, error, warn, info, debug or trace.",
    )
    log_pretty: bool = setting(
        ["OCIS_LOG_PRETTY", "SSE_LOG_PRETTY"], "false", parse_bool,
        "Write human-readable log lines instead of JSON.",
    )
    log_color: bool = setting(
        ["OCIS_LOG_COLOR", "SSE_LOG_COLOR"], "false", parse_bool,
        "Colour the human-readable log lines.",
    )
    log_file: str = setting(
        ["OCIS_LOG_FILE", "SSE_LOG_FILE"], "", parse_string,
        "Append the log to this file instead of writing it to stderr.",
    )

    # Debug server
    debug_addr: Address = setting(
        ["SSE_DEBUG_ADDR"], "127.0.0.1:9139", parse_address,
        "The bind address of the debug server (health, readiness, metrics, configuration).",
    )
    debug_token: str = setting(
        ["SSE_DEBUG_TOKEN"], "", parse_string,
        "A bearer token that /metrics and /config require when set.",
        secret=True,
    )
    debug_pprof: bool = setting(
        ["SSE_DEBUG_PPROF"], "false", parse_bool,
        "Serve CPU profiles and task dumps under /debug/pprof/ on the debug server.",
    )
    debug_zpages: bool = setting(
        ["SSE_DEBUG_ZPAGES"], "false", parse_bool,
        "Serve recent and in-flight trace spans at /debug/tracez on the debug server.",
    )

    # Tracing
    tracing_enabled: bool = setting(
        ["OCIS_TRACING_ENABLED", "SSE_TRACING_ENABLED"], "false", parse_bool,
        "Export OpenTelemetry traces.",
    )
    tracing_type: str = setting(
        ["OCIS_TRACING_TYPE", "SSE_TRACING_TYPE"], "", parse_tracing_type,
        "The trace exporter: jaeger (the default) or otlp; both send OTLP.",
    )
    tracing_endpoint: str = setting(
        ["OCIS_TRACING_ENDPOINT", "SSE_TRACING_ENDPOINT"], "", parse_string,
        "The host:port of a tracing agent that receives OTLP over HTTP at /v1/traces.",
    )
    tracing_collector: str = setting(
        ["OCIS_TRACING_COLLECTOR", "SSE_TRACING_COLLECTOR"], "", parse_string,
        "The URL of a collector that receives OTLP over HTTP; it wins over the endpoint.",
    )

    # Streams
    keepalive_interval: float = setting(
        ["SSE_KEEPALIVE_INTERVAL"], "0s", parse_duration,
        "The interval of keep-alive comments on each stream, as a Go duration; 0s turns them off.",
    )

    replay_window: float = setting(
        ["SSE_REPLAY_WINDOW"], "5m", parse_duration,
        "How long events are kept for clients that reconnect with Last-Event-ID, as a Go duration; 0s keeps none.",
    )
    replay_max_events: int = setting(
        ["SSE_REPLAY_MAX_EVENTS"], "10000", parse_count,
        "How many recent events are kept for clients that reconnect with Last-Event-ID; 0 keeps none.",
    )
    replay_max_bytes: int = setting(
        ["SSE_REPLAY_MAX_BYTES"], "64MiB", parse_size,
        "How many bytes of recent events are kept for clients that reconnect with Last-Event-ID; 0 means no byte limit.",
    )
    max_connections_per_user: int = setting(
        ["SSE_MAX_CONNECTIONS_PER_USER"], "20", parse_count,
        "The streams one user may open on this process; more get 429. 0 means unlimited.",
    )
    max_buffered_events: int = setting(
        ["SSE_MAX_BUFFERED_EVENTS"], "1000", parse_count,
        "The events a stream may hold while its client does not read; past it the stream is closed.",
    )
    max_buffered_bytes: int = setting(
        ["SSE_MAX_BUFFERED_BYTES"], "4MiB", parse_size,
        "The bytes of events a stream may hold while its client does not read; past it the stream is closed.",
    )
    max_message_size: int = setting(
        ["SSE_MAX_MESSAGE_SIZE"], "1MiB", parse_size,
        "The largest event message that is delivered; larger ones are logged, counted and dropped.",
    )
    shutdown_timeout: float = setting(
        ["SSE_SHUTDOWN_TIMEOUT"], "10s", parse_duration,
        "How long a stopping runsse waits for streams to close and NATS to drain, as a Go duration.",
    )
    channel_layer_url: str = setting(
        ["SSE_CHANNEL_LAYER_URL"], "", optional(parse_channel_layer_url),
        "A Redis URL; when set, all processes share a channels-redis layer and one durable consumer.",
    )
    consumer_name: str = setting(
        ["SSE_CONSUMER_NAME"], "sse", parse_string,
        "The durable JetStream consumer that bridges share when SSE_CHANNEL_LAYER_URL is set.",
    )
    events_ack_wait: float = setting(
        ["SSE_EVENTS_ACK_WAIT"], "30s", parse_duration,
        "How long JetStream waits for a bridge to acknowledge an event before it redelivers it.",
    )

    # Event system
    events_endpoint: tuple = setting(
        ["OCIS_EVENTS_ENDPOINT", "SSE_EVENTS_ENDPOINT"], "127.0.0.1:9233", parse_nats_servers,
        "The NATS servers of the event system, comma-separated.",
    )
    events_cluster: str = setting(
        ["OCIS_EVENTS_CLUSTER", "SSE_EVENTS_CLUSTER"], "ocis-cluster", parse_string,
        "The cluster id of the event system. NATS does not use it; it is accepted for oCIS compatibility.",
    )
    events_tls_insecure: bool = setting(
        ["OCIS_INSECURE", "SSE_EVENTS_TLS_INSECURE"], "false", parse_bool,
        "Skip the verification of the NATS server certificate (ignored when a root CA is set).",
    )
    events_tls_root_ca_certificate: str = setting(
        ["OCIS_EVENTS_TLS_ROOT_CA_CERTIFICATE", "SSE_EVENTS_TLS_ROOT_CA_CERTIFICATE"], "", optional(parse_readable_file),
        "The PEM file of the CA that signed the NATS server certificate.",
    )
    events_enable_tls: bool = setting(
        ["OCIS_EVENTS_ENABLE_TLS", "SSE_EVENTS_ENABLE_TLS"], "false", parse_bool,
        "Connect to NATS over TLS 1.2 or newer.",
    )
    events_auth_username: str = setting(
        ["OCIS_EVENTS_AUTH_USERNAME", "SSE_EVENTS_AUTH_USERNAME"], "", parse_string,
        "The user name for NATS; sent only together with a password.",
    )
    events_auth_password: str = setting(
        ["OCIS_EVENTS_AUTH_PASSWORD", "SSE_EVENTS_AUTH_PASSWORD"], "", parse_string,
        "The password for NATS.",
        secret=True,
    )

    # HTTP
    http_addr: Address = setting(
        ["SSE_HTTP_ADDR"], "127.0.0.1:9135", parse_address,
        "The bind address of the streams.",
    )
    http_root: str = setting(
        ["SSE_HTTP_ROOT"], "/", parse_root,
        "The path prefix of the stream endpoints.",
    )
    cors_allow_origins: tuple = setting(
        ["OCIS_CORS_ALLOW_ORIGINS", "SSE_CORS_ALLOW_ORIGINS"], "*", parse_origins,
        "The origins allowed to open streams from a browser, comma-separated; * allows any, and one * inside an origin is a wildcard.",
    )
    cors_allow_methods: tuple = setting(
        ["OCIS_CORS_ALLOW_METHODS", "SSE_CORS_ALLOW_METHODS"], "GET", parse_list,
        "The methods allowed in CORS requests, comma-separated.",
    )
    cors_allow_headers: tuple = setting(
        ["OCIS_CORS_ALLOW_HEADERS", "SSE_CORS_ALLOW_HEADERS"], CORS_DEFAULT_HEADERS, parse_list,
        "The request headers allowed in CORS requests, comma-separated.",
    )
    cors_allow_credentials: bool = setting(
        ["OCIS_CORS_ALLOW_CREDENTIALS", "SSE_CORS_ALLOW_CREDENTIALS"], "true", parse_bool,
        "Allow credentialed CORS requests; the allowed origin is then echoed instead of *.",
    )
    http_tls_enabled: bool = setting(
        ["OCIS_HTTP_TLS_ENABLED"], "false", parse_bool,
        "Serve the streams over TLS; without a certificate, a temporary self-signed one is generated.",
    )
    http_tls_certificate: str = setting(
        ["OCIS_HTTP_TLS_CERTIFICATE"], "", optional(parse_readable_file),
        "The PEM file of the TLS server certificate.",
    )
    http_tls_key: str = setting(
        ["OCIS_HTTP_TLS_KEY"], "", optional(parse_readable_file),
        "The PEM file of the key of the TLS server certificate.",
    )

    # Service registry
    registry: str = setting(
        ["MICRO_REGISTRY", "SSE_REGISTRY"], "nats-js-kv", parse_registry,
        "The service registry that the oCIS proxy finds the streams in: nats-js-kv, or none to not register.",
    )
    registry_address: tuple = setting(
        ["MICRO_REGISTRY_ADDRESS"], "", optional(parse_nats_servers),
        "The NATS servers of the nats-js-kv registry, comma-separated; empty means those of SSE_EVENTS_ENDPOINT.",
    )
    registry_auth_username: str = setting(
        ["MICRO_REGISTRY_AUTH_USERNAME"], "", parse_string,
        "The user name for the registry's NATS; without it and a password, the SSE_EVENTS_AUTH_* credentials are used.",
    )
    registry_auth_password: str = setting(
        ["MICRO_REGISTRY_AUTH_PASSWORD"], "", parse_string,
        "The password for the registry's NATS.",
        secret=True,
    )
    registry_ttl: float = setting(
        ["EXPERIMENTAL_REGISTER_TTL"], "30s", parse_positive_duration,
        "How long an entry lives in the registry without a refresh, as a Go duration.",
    )
    registry_interval: float = setting(
        ["EXPERIMENTAL_REGISTER_INTERVAL"], "25s", parse_positive_duration,
        "How often the entry is refreshed, as a Go duration; it must be shorter than the TTL.",
    )
    registry_advertise_addr: Address | str = setting(
        ["SSE_REGISTRY_ADVERTISE_ADDR"], "", optional(parse_address),
        "The host:port registered for the streams; empty means SSE_HTTP_ADDR, with a reachable IP of this host when it binds every interface.",
    )

    # Authentication
    jwt_secret: str = setting(
        ["OCIS_JWT_SECRET", "SSE_JWT_SECRET"], "", parse_string,
        "The secret that signs the x-access-token JWTs; runsse does not start without it.",
        secret=True,
    )

    # Where each value came from: "default", "settings.SSE" or the name of
    # the environment variable. Not itself a setting.
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    def env_name(self, name):
        """Return the environment variable that an operator sets for field ``name``."""
        return SSE_FIELDS[name].metadata["env"][-1]

    def origin_of(self, name):
        """Return where to look for the value of field ``name``: its source, or its main variable."""
        source = self.sources.get(name, "default")
        return self.env_name(name) if source == "default" else source


SSE_FIELDS = {f.name: f for f in fields(SSEConfig) if "env" in f.metadata}


def _parse(raw, origin, config_field):
    try:
        return config_field.metadata["parse"](raw)
    except ValueError as error:
        raise ConfigurationError(origin, raw, str(error), secret=config_field.metadata["secret"]) from None


def load_config(environ=None, overrides=None):
    """
    Resolve the configuration from ``overrides`` (the ``SSE`` settings
    dict) and ``environ`` (``os.environ`` by default).

    Raises ``ConfigurationError`` for the first invalid value.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})

    unknown = sorted(set(overrides) - {name.upper() for name in SSE_FIELDS})
    if unknown:
        known = ", ".join(sorted(name.upper() for name in SSE_FIELDS))
        raise ConfigurationError(f"settings.SSE[{unknown[0]!r}]", overrides[unknown[0]], f"unknown key; known keys are {known}")

    values = {}
    sources = {}
    for name, config_field in SSE_FIELDS.items():
        value = config_field.default
        source = "default"

        key = name.upper()
        if key in overrides:
            raw = overrides[key]
            # Settings may hold text (parsed like the environment) or an
            # already typed value, which is taken as it is.
            value = _parse(raw, f"settings.SSE[{key!r}]", config_field) if isinstance(raw, str) else raw
            source = "settings.SSE"

        for variable in config_field.metadata["env"]:
            raw = environ.get(variable, "")
            if raw:
                value = _parse(raw, variable, config_field)
                source = variable

        values[name] = value
        sources[name] = source

    config = SSEConfig(**values, sources=sources)
    _check_combinations(config)
    return config


def _check_combinations(config):
    """Raise ``ConfigurationError`` for values that are valid alone but not together."""
    if config.http_addr.port == config.debug_addr.port:
        raise ConfigurationError(
            config.origin_of("debug_addr"),
            str(config.debug_addr),
            f"the debug server needs a port of its own, but {config.http_addr.port} is also the port of SSE_HTTP_ADDR",
        )
    if bool(config.http_tls_certificate) != bool(config.http_tls_key):
        name = "http_tls_key" if config.http_tls_certificate else "http_tls_certificate"
        raise ConfigurationError(
            config.origin_of(name),
            getattr(config, name),
            "OCIS_HTTP_TLS_CERTIFICATE and OCIS_HTTP_TLS_KEY must be set together",
        )
    if config.registry and config.registry_interval >= config.registry_ttl:
        raise ConfigurationError(
            config.origin_of("registry_interval"),
            f"{config.registry_interval:g}s",
            f"the registry entry must be refreshed before it expires, so set it below the TTL of {config.registry_ttl:g}s",
        )
    if config.tracing_enabled and not (config.tracing_endpoint or config.tracing_collector):
        raise ConfigurationError(
            config.origin_of("tracing_endpoint"),
            "",
            "tracing is enabled, so set SSE_TRACING_ENDPOINT (an OTLP gRPC host:port) or SSE_TRACING_COLLECTOR (an OTLP HTTP URL)",
        )


@functools.lru_cache(maxsize=1)
def get_config():
    """Return the process-wide configuration, resolving it on first use."""
    return load_config(overrides=getattr(settings, "SSE", None))


def reload_config():
    """Forget the cached configuration so that the next ``get_config`` re-reads it."""
    get_config.cache_clear()


@receiver(setting_changed)
def _reload_on_setting_changed(*, setting, **kwargs):
    if setting == "SSE":
        reload_config()

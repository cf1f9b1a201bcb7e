"""
Connection options for NATS, shared by the bridge, the replay reader, the
publishing API and the registry.
"""

import ssl


def nats_connect_options(config):
    """Build the keyword arguments of ``nats.connect`` from the configuration."""
    options = {
        "servers": list(config.events_endpoint),
        "name": "sse",
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 5,
    }
    # oCIS sends credentials only when both are set; so do we.
    if config.events_auth_username and config.events_auth_password:
        options["user"] = config.events_auth_username
        options["password"] = config.events_auth_password
    if config.events_enable_tls:
        options["tls"] = tls_context(config)
    return options


def tls_context(config):
    """Return the TLS context for NATS: TLS 1.2 or newer, verified unless SSE_EVENTS_TLS_INSECURE is set."""
    context = ssl.create_default_context(cafile=config.events_tls_root_ca_certificate or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # As in oCIS, a configured root CA always means verification.
    if config.events_tls_insecure and not config.events_tls_root_ca_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

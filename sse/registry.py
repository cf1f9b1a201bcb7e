"""
The layout of entries in the go-micro service registry that the oCIS
proxy reads.

The oCIS proxy sends ``/ocs/v2.php/apps/notifications/api/v1/notifications/sse``
to the service ``com.owncloud.sse.sse`` and looks its nodes up in the
registry. The default registry of oCIS, ``nats-js-kv``, is the NATS
JetStream key-value bucket ``service-registry``, which oCIS 7 and
OpenCloud use as follows (``ocis-pkg/natsjsregistry`` on top of go-micro's
``store/nats-js-kv`` plugin):

* Each node has its own key, ``<service name>@<node uuid>@<version>``.
  The store prefixes it with its table name and an underscore
  (``service-registry_``) and stores the standard, padded base32 of the
  result, because NATS allows only a few characters in keys.
* The value is the JSON object ``{"key", "data", "metadata"}``, where
  ``key`` is the unprefixed key, ``data`` the base64 of the JSON of a
  go-micro ``registry.Service`` with this one node, and ``metadata`` null.
* The node id is ``<service name>-<node uuid>``. When a key is deleted, the
  proxy's registry watcher rebuilds the node id from the key this way and
  drops that node.
* Entries expire with the bucket's max age (30 s in oCIS), so every
  process refreshes its entry (every 25 s in oCIS) and deletes it on
  shutdown. ``sse.registration`` does that for ``runsse``.

oCIS 5.0 kept a single entry per service under the plain service name,
a layout that this module does not write.
"""

import base64
import json

from .nats_options import nats_connect_options

SERVICE_NAME = "com.owncloud.sse.sse"
BUCKET = "service-registry"
# go-micro's store "table", which the store puts in front of every key.
TABLE = "service-registry"


def service_key(name, node_uuid, version):
    """Return the registry key of one node, before go-micro's store prefixes and encodes it."""
    return f"{name}@{node_uuid}@{version}"


def encode_key(key):
    """Return the NATS key under which go-micro's nats-js-kv store keeps ``key``."""
    return base64.b32encode(f"{TABLE}_{key}".encode()).decode("ascii")


def decode_key(nats_key):
    """Return the go-micro key of ``nats_key``. Raises ``ValueError`` for another table or invalid base32."""
    full = base64.b32decode(nats_key).decode()
    table, separator, key = full.partition("_")
    if not separator or table != TABLE:
        raise ValueError(f"{full!r} is not a key of the {TABLE!r} table")
    return key


def build_service(name, version, node_id, address, metadata):
    """Return a go-micro ``registry.Service`` with one node, as a JSON-ready dict."""
    return {
        "name": name,
        "version": version,
        "metadata": None,
        "endpoints": [],
        "nodes": [{"id": node_id, "address": address, "metadata": dict(metadata)}],
    }


def encode_value(key, service):
    """Return the bucket value for ``service`` under the go-micro key ``key``."""
    data = json.dumps(service, separators=(",", ":")).encode()
    envelope = {"key": key, "data": base64.b64encode(data).decode("ascii"), "metadata": None}
    return json.dumps(envelope, separators=(",", ":")).encode()


def decode_value(value):
    """Return ``(key, service)`` from a bucket value, as the oCIS proxy reads it."""
    envelope = json.loads(value)
    return envelope["key"], json.loads(base64.b64decode(envelope["data"]))


def node_metadata(config):
    """
    Return the metadata of this node.

    The proxy builds the backend URL from ``protocol``, and switches it to
    https when ``use_tls`` is ``"true"``. The other keys are those that oCIS
    services register, for tools that list the registry.
    """
    metadata = {"protocol": "http", "registry": "nats-js-kv", "server": "http", "transport": "http"}
    if config.http_tls_enabled:
        metadata["use_tls"] = "true"
    return metadata


def registry_connect_options(config):
    """
    Build the keyword arguments of ``nats.connect`` for the registry.

    The connection is the bridge's, with the servers of
    ``MICRO_REGISTRY_ADDRESS`` and the ``MICRO_REGISTRY_AUTH_*`` credentials
    where those are set.
    """
    options = nats_connect_options(config)
    options["name"] = "sse-registry"
    options["servers"] = list(config.registry_address or config.events_endpoint)
    if config.registry_auth_username and config.registry_auth_password:
        options["user"] = config.registry_auth_username
        options["password"] = config.registry_auth_password
    return options

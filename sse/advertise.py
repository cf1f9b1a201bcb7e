"""
The address that the service registry advertises for the streams.

Other hosts cannot connect to a bind address such as ``0.0.0.0:9135``, so
when the stream server binds every interface, the registry gets an IP
address of one of this host's interfaces instead. The choice follows
go-micro's ``util/addr.Extract``, which the oCIS services use: a private
address first, then any other one.
"""

import ipaddress
import logging
import socket

import psutil

from .parsing import Address

logger = logging.getLogger(__name__)

# The ranges that go-micro treats as private, with 100.64.0.0/10 for
# carrier-grade NAT, which Kubernetes networks often use.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8")
)


def advertised_address(config):
    """Return the ``host:port`` to register for the streams of ``config``."""
    if config.registry_advertise_addr:
        return str(config.registry_advertise_addr)

    address = config.http_addr
    if not address.all_interfaces:
        return str(address)

    ip = choose_ip(interface_ips())
    if ip is None or ip.is_loopback:
        ip = ip or ipaddress.ip_address("127.0.0.1")
        logger.warning(
            "SSE_HTTP_ADDR=%s binds every interface, but this host has no address other than %s, "
            "so only this host can reach the registered streams. Set SSE_REGISTRY_ADVERTISE_ADDR "
            "to an address that the oCIS proxy can reach",
            address,
            ip,
        )
    return str(Address(str(ip), address.port))


def interface_ips():
    """Return the IPv4 and IPv6 addresses of the interfaces that are up, in the system's order."""
    stats = psutil.net_if_stats()
    ips = []
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                # An IPv6 link-local address carries its zone, as in fe80::1%eth0.
                ips.append(ipaddress.ip_address(address.address.split("%", 1)[0]))
    return ips


def choose_ip(ips):
    """
    Return the address that other hosts most likely reach this host at, or ``None``.

    Private IPv4 addresses come first, then unique local IPv6 addresses,
    then other global ones, and loopback addresses last. Link-local
    addresses are skipped, because they need a zone to be usable.
    """
    candidates = [ip for ip in ips if not ip.is_link_local and not ip.is_unspecified]
    if not candidates:
        return None
    return min(candidates, key=_preference)


def _preference(ip):
    if ip.is_loopback:
        return 3
    if any(ip in network for network in PRIVATE_NETWORKS):
        return 0 if ip.version == 4 else 1
    return 2

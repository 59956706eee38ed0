"""Client addresses: parsed with ``ipaddress`` (so what is stored is an address, at most 39
characters), and read from ``X-Forwarded-For`` only when the peer is a trusted proxy.

Each proxy appends the address it received the request from, so the header's right end is the
most trustworthy: walking it right to left while the hop is a trusted proxy, the first address
that is not one is the client. Anything left of it is the client's own claim, and ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The longest spelling worth parsing: a bracketed IPv6 address with a port. Longer is not an address.
MAX_TEXT = 64


def parse_ip(text: str | None) -> IPAddress | None:
    """``203.0.113.7``, ``203.0.113.7:443``, ``2001:db8::1``, ``[2001:db8::1]:443`` → the address
    (an IPv4-mapped IPv6 address as IPv4, without a zone id); anything else → None."""
    if not text or len(text) > MAX_TEXT:
        return None
    host = text.strip()
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest and not (rest[:1] == ":" and rest[1:].isdigit()):
            return None
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
        if not port.isdigit():
            return None
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_network(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``192.0.2.10`` (one address), ``fd00::/8``; ``ValueError`` saying what is expected."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"expected an IP address or a CIDR network such as 10.0.0.0/8; got {text!r}"
        ) from None


def parse_networks(value: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """A list of networks, or one comma-separated string of them (as one variable holds them)."""
    items = (value or "").split(",") if isinstance(value, str) or value is None else value
    return tuple(parse_network(item) for item in items if str(item).strip())


def is_trusted(ip: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]
) -> str | None:
    """The client's address, or None when it cannot be known (an unparsable hop behind a proxy)."""
    ip = parse_ip(peer)
    if ip is None:
        return None
    if not proxies or not is_trusted(ip, proxies):
        return str(ip)  # headers from an untrusted peer are the client's own words
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while hops and is_trusted(ip, proxies):
        ip = parse_ip(hops.pop())
        if ip is None:
            return None
    return str(ip)

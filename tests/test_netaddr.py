"""Client addresses: parsed, bounded, and read through trusted proxies only (pure)."""

from __future__ import annotations

import pytest

from syncd.netaddr import client_address, parse_ip, parse_network

PROXIES = [parse_network("10.0.0.0/8"), parse_network("fd00::/8")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7:443 ", "203.0.113.7"),
        ("2001:DB8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("fe80::1%" + "eth0", "fe80::1"),  # the zone id is not kept
        ("::ffff:198.51.100.1", "198.51.100.1"),
        ("unknown", None),
        ("203.0.113.7:http", None),
        ("[2001:db8::1]junk", None),
        ("1" * 100, None),
        ("fe80::1%" + "x" * 80, None),
        ("", None),
        (None, None),
    ],
)
def test_an_address_is_parsed_or_refused(text, expected):
    ip = parse_ip(text)
    assert (str(ip) if ip else None) == expected
    assert ip is None or len(str(ip)) <= 39


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.1", ["192.0.2.1"], "198.51.100.1"),  # not a proxy: its header is ignored
        ("10.1.2.3", [], "10.1.2.3"),  # a proxy's own request (a probe)
        ("10.1.2.3", ["192.0.2.1"], "192.0.2.1"),
        ("10.1.2.3", ["192.0.2.66, 192.0.2.1, 10.9.9.9"], "192.0.2.1"),  # two proxies in a row
        ("10.1.2.3", ["192.0.2.66", "192.0.2.1"], "192.0.2.1"),  # the header given twice
        ("10.1.2.3", ["10.5.5.5, 10.9.9.9"], "10.5.5.5"),  # a client inside the trusted network
        ("10.1.2.3", ["192.0.2.1, garbage"], None),  # a proxy passed something unparsable
        ("fd00::2", ["2001:db8::5"], "2001:db8::5"),
        ("testclient", ["192.0.2.1"], None),
    ],
)
def test_the_client_is_the_last_hop_that_is_not_a_trusted_proxy(peer, forwarded, expected):
    assert client_address(peer, forwarded, PROXIES) == expected


def test_with_no_trusted_proxy_the_peer_is_the_client():
    assert client_address("127.0.0.1", ["192.0.2.1"], []) == "127.0.0.1"

"""Client addresses as a Space's proxies deliver them: uvicorn's ProxyHeadersMiddleware (which Gradio's server
runs) with our BEAR_TRUSTED_PROXIES as its forwarded_allow_ips, then `clients.address` on the result, exactly as
app.py wires them. The raw-protocol test at the end runs the app itself with a Space's environment."""

from __future__ import annotations

import asyncio

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bear_classifier.settings import Rates, Settings, SettingsError
from bear_classifier.web import clients

ON_A_SPACE = Settings.from_env({"SPACE_ID": "bear-lab/bears"})
LOCAL = Settings.from_env({})
VISITOR = "203.0.113.7"


def client_of(settings: Settings, peer: str, *headers: tuple[str, str]) -> str:
    """The client address our shares charge for a request from `peer` carrying `headers`."""
    seen = {}

    async def app(scope, receive, send):
        seen["host"] = scope["client"][0]
        seen["headers"] = [(k.decode("latin1"), v.decode("latin1")) for k, v in scope["headers"]]

    scope = {
        "type": "http",
        "client": (peer, 40000),
        "headers": [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in headers],
    }
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=settings.trusted_proxies)(scope, None, None))
    return clients.address(seen["host"], seen["headers"], settings.on_space)


def test_two_proxy_hops_name_the_visitor():
    assert client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", f"{VISITOR}, 10.9.8.7")) == VISITOR


def test_a_spoofed_leading_entry_is_ignored():
    for spoof in ("198.51.100.1", "127.0.0.1", "10.0.0.1"):
        assert client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", f"{spoof}, {VISITOR}")) == VISITOR


def test_behind_the_ssr_proxy_the_loopback_peer_is_not_the_client():
    """Gradio's Node SSR proxy connects from 127.0.0.1 and passes the header through."""
    assert client_of(ON_A_SPACE, "127.0.0.1", ("X-Forwarded-For", f"{VISITOR}, 10.9.8.7")) == VISITOR


def test_without_the_header_the_peer_is_the_client():
    assert client_of(ON_A_SPACE, "10.1.2.3") == "10.1.2.3"
    assert client_of(ON_A_SPACE, VISITOR) == VISITOR


def test_a_caller_s_own_header_line_does_not_win_over_the_proxy_s():
    """Two header lines (the caller's, then the one the proxy added) read as one list, in order."""
    got = client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", VISITOR))
    assert got == VISITOR


def test_an_untrusted_peer_s_header_is_ignored_and_locally_every_header_is():
    assert client_of(ON_A_SPACE, VISITOR, ("X-Forwarded-For", "198.51.100.1")) == VISITOR
    assert client_of(LOCAL, "127.0.0.1", ("X-Forwarded-For", "198.51.100.1")) == "127.0.0.1"
    assert client_of(LOCAL, "127.0.0.1", ("X-IP-Token", "forged")) == "127.0.0.1"


def test_ipv6_counts_per_64_and_spellings_are_one_client():
    a = client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", "2001:db8:1:2:aaaa::1"))
    b = client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", "2001:0db8:0001:0002:ffff::9"))
    assert a == b == "2001:db8:1:2::/64"
    assert client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", "2001:db8:1:3::1")) != a  # the next /64
    assert clients.normalise("::ffff:203.0.113.7") == VISITOR
    assert clients.normalise("[2001:db8::1]") == "2001:db8::/64"


def test_a_caller_s_own_ip_token_gets_no_new_share():
    """Gradio's page attaches X-IP-Token itself, so a script can write any: it must not name a new client."""
    alice = client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", VISITOR), ("X-IP-Token", "token-1"))
    again = client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", VISITOR), ("X-IP-Token", "token-2"))
    blank = client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", VISITOR), ("X-IP-Token", ""), ("X-IP-Token", "x"))
    assert alice == again == blank == VISITOR


def test_the_first_requests_header_shapes_are_logged_hashed(capsys, monkeypatch):
    monkeypatch.setattr(clients, "_shapes", clients._Shapes(2))
    for _ in range(5):
        client_of(ON_A_SPACE, "10.1.2.3", ("X-Forwarded-For", f"{VISITOR}, 10.9.8.7"))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["client address: X-Forwarded-For 2 entries in 1 lines, X-IP-Token absent, client #"
                     + clients.hashlib.sha256(VISITOR.encode()).hexdigest()[:8]] * 2  # fmt: skip
    assert VISITOR not in "".join(lines)


def test_trusted_proxies_are_one_checked_setting():
    assert Settings.from_env({"SPACE_ID": "a/b", "BEAR_TRUSTED_PROXIES": "10.0.0.0/8"}).trusted_proxies == "10.0.0.0/8"
    with pytest.raises(SettingsError, match="BEAR_TRUSTED_PROXIES"):
        Settings.from_env({"BEAR_TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"})


def test_every_refusal_names_the_setting_that_raises_it():
    for kind in clients.Quotas(Rates())._items:
        assert clients.SETTING_OF[kind] in clients.wait(kind)


def test_a_burst_at_a_window_s_edge_gets_one_share_not_two(monkeypatch):
    """Issue 28: with fixed windows (each starts at its first hit), a client who joined once, then sent a burst just
    before that window's end and another just after, had 57 joins in 60 s against a share of 30. The moving window
    remembers each join's time: the second burst waits until the first has aged out."""
    import limits.storage.memory

    now = [1_000_000.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(limits.storage.memory, "time", Clock)
    quotas = clients.Quotas(Rates(joins_per_minute=30))
    assert quotas.spend("join", "127.0.0.9")  # a fixed window would start here
    now[0] += 59
    assert sum(quotas.spend("join", "127.0.0.9") for _ in range(30)) == 29
    now[0] += 2  # past where a fixed window would have ended (and gave 30 more)
    assert sum(quotas.spend("join", "127.0.0.9") for _ in range(30)) == 1  # only the first join has aged out
    assert quotas.spend("join", "127.0.0.10")  # another client's share is its own
    now[0] += 59  # the burst is now over a minute old; the join after it is not
    assert sum(quotas.spend("join", "127.0.0.9") for _ in range(40)) == 29

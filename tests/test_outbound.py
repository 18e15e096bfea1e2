"""console.outbound against real sockets: guard, caps, timeouts, redirects."""

import pytest

from console import outbound
from console.instance_forms import InstanceForm
from tests.idp_server import DocumentServer


@pytest.fixture
def server():
    server = DocumentServer()
    yield server
    server.stop()


@pytest.fixture
def allow_private(settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def forbid_private(settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = False


def test_it_reads_json(server, allow_private):
    server.json("/doc", {"hello": "world"})
    response = outbound.get(server.url("/doc"))
    assert response.status == 200
    assert response.json() == {"hello": "world"}


def test_it_explains_a_body_that_is_not_json(server, allow_private):
    server.raw("/doc", b"<html>login page</html>")
    with pytest.raises(outbound.OutboundError, match="did not return JSON"):
        outbound.get(server.url("/doc")).json()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_it_refuses_bodies_over_one_mebibyte(server, allow_private, chunked):
    server.raw("/big", b"x" * (2 * 1024 * 1024), chunked=chunked)
    with pytest.raises(outbound.OutboundError, match="more than 1024 KiB") as caught:
        outbound.get(server.url("/big"))
    assert caught.value.permanent


def test_it_gives_up_on_a_slow_server_after_the_read_timeout(server, allow_private):
    server.json("/slow", {}, delay=outbound.READ_TIMEOUT + 1)
    with pytest.raises(outbound.OutboundError, match="did not answer within 5 s") as caught:
        outbound.get(server.url("/slow"))
    assert not caught.value.permanent  # worth retrying later


def test_it_reports_a_refused_connection_as_transient(allow_private):
    with pytest.raises(outbound.OutboundError, match="connection refused") as caught:
        outbound.get("http://127.0.0.1:1/")
    assert not caught.value.permanent


def test_it_follows_three_redirects_and_not_a_fourth(server, allow_private):
    server.json("/final", {"ok": True})
    server.redirect("/r3", "/final")
    server.redirect("/r2", "/r3")
    server.redirect("/r1", "/r2")
    assert outbound.get(server.url("/r1")).json() == {"ok": True}
    server.redirect("/r0", "/r1")
    with pytest.raises(outbound.OutboundError, match="Too many redirects"):
        outbound.get(server.url("/r0"))


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
    ],
)
def test_it_refuses_redirects_to_link_local_and_reserved_even_when_private_is_allowed(
    server, allow_private, target
):
    server.redirect("/innocent", target)
    with pytest.raises(outbound.OutboundError, match="Refused") as caught:
        outbound.get(server.url("/innocent"))
    assert caught.value.permanent


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://169.254.169.254/",
        "https://0.0.0.0/",
        "https://2130706433/",  # 127.0.0.1 in decimal
        "https://0177.0.0.1/",  # 127.0.0.1 in octal
        "https://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "https://[::ffff:10.0.0.1]/",
        "https://localhost/",  # a name that resolves to a loopback address
    ],
)
def test_it_refuses_private_addresses_by_default(forbid_private, url):
    with pytest.raises(outbound.OutboundError, match="Refused") as caught:
        outbound.get(url)
    assert caught.value.permanent


def test_it_refuses_plain_http_by_default(forbid_private):
    with pytest.raises(outbound.OutboundError, match="plain http is not allowed"):
        outbound.get("http://example.test/")


def test_it_checks_the_address_actually_connected_to(server, forbid_private):
    """Even past the name check (as after a DNS rebinding), the socket's peer is checked."""
    with pytest.raises(outbound.OutboundError, match="Refused: 127.0.0.1 is at 127.0.0.1"):
        outbound._send("GET", server.url("/anything"), None, None, deadline=float("inf"))
    assert server.requests == []  # nothing was sent on that connection


def test_it_refuses_credentials_in_urls(allow_private):
    with pytest.raises(outbound.OutboundError, match="credentials"):
        outbound.get("http://user:pw@127.0.0.1/")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8765/",
        "https://10.0.0.8/hook",
        "https://[::ffff:192.168.1.4]/",
        "https://169.254.169.254/",
        "https://localhost/",
    ],
)
def test_webhook_posts_to_private_addresses_are_refused_by_default(forbid_private, url):
    with pytest.raises(outbound.OutboundError, match="Refused") as caught:
        outbound.post(url, b"{}", {"Content-Type": "application/json"})
    assert caught.value.permanent  # a push to such a URL is not retried


def test_ipv6_loopback_is_allowed_exactly_as_127_0_0_1(allow_private):
    """[::1] was refused even with private URLs allowed (it lies in a reserved block)."""
    import socket

    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now: a refused connection, not a refusal
    with pytest.raises(outbound.OutboundError, match="Could not connect") as caught:
        outbound.get(f"http://[::1]:{port}/")
    assert not caught.value.permanent
    assert outbound.address_refusal("::1") is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("0xa9fea9fe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("0x7f000001", "127.0.0.1"),
    ],
)
def test_numeric_spellings_of_addresses_are_refused_before_anything_connects(
    allow_private, host, address
):
    assert outbound.numeric_host_problem(host) == (
        f"{host} is a numeric spelling of the address {address}: write addresses as "
        f"{address}, or use a host name."
    )
    assert "numeric spelling" in outbound.webhook_url_problem(f"http://{host}/", allow_http=True)
    with pytest.raises(outbound.OutboundError, match="numeric spelling"):
        outbound.get(f"http://{host}/")
    assert outbound.numeric_host_problem("169.254.169.254") == ""
    assert outbound.numeric_host_problem("idp.example.test") == ""


@pytest.mark.django_db
def test_the_instance_form_refuses_a_numeric_spelling(allow_private, keycloak_provider):
    form = InstanceForm(data={
        "name": "lab", "url_base": "https://lab.example.test/", "shape": "compose",
        "rollout_group": "default", "provider": keycloak_provider.pk, "push_target": "webhook",
        "webhook_url": "http://0xa9fea9fe:8765/", "webhook_allow_http": "on",
    })  # fmt: skip
    assert not form.is_valid()
    assert "numeric spelling of the address 169.254.169.254" in str(form.errors["webhook_url"])


def test_with_private_urls_allowed_plain_http_still_goes_only_to_private_addresses(
    allow_private, monkeypatch
):
    """SSO_ADMIN_ALLOW_PRIVATE_URLS allowed http:// to public hosts too. (The name resolves to
    a public address here; check_url refuses before any connection is made.)"""
    import socket

    public = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 80))]
    monkeypatch.setattr(outbound.socket, "getaddrinfo", lambda *args, **kwargs: public)
    with pytest.raises(outbound.OutboundError, match="plain http goes only to loopback") as caught:
        outbound.check_url("http://idp.example.test/.well-known/openid-configuration")
    assert caught.value.permanent
    outbound.check_url("https://idp.example.test/.well-known/openid-configuration")  # fine


@pytest.mark.parametrize(
    "address",
    [
        "2002:a00:1::1",  # 6to4 carrying 10.0.0.1
        "2002:7f00:1::1",  # 6to4 carrying 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 carrying 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 carrying 169.254.169.254
    ],
)
def test_ipv6_addresses_carrying_private_ipv4_are_not_public(address, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = False
    assert outbound.address_refusal(address) is not None


def test_a_complete_answer_read_after_the_deadline_is_not_lost(idp, monkeypatch):
    """A worker paused while the agent answered (or an agent slower than the deadline to
    start answering) must not turn a delivered push into a failure that is sent again."""
    monkeypatch.setattr(outbound, "TOTAL_DEADLINE", 0.5)
    idp.json("/late", {"applied": 1}, delay=1.0)  # whole, but after the deadline
    response = outbound.get(idp.url("/late"))
    assert (response.status, response.json()) == (200, {"applied": 1})


def test_an_answer_still_arriving_after_the_deadline_is_abandoned(idp, monkeypatch):
    monkeypatch.setattr(outbound, "TOTAL_DEADLINE", 0.5)
    idp.slow_body("/dripping", b"x" * 200_000, pause=0.3)
    with pytest.raises(outbound.OutboundError, match="took longer than 0.5 s") as caught:
        outbound.get(idp.url("/dripping"))
    assert not caught.value.permanent

"""What ``meshdex mcp --http`` lets in: web pages (Origin, Host, CORS) and Authorization headers.

Against real ``meshdex mcp --http`` subprocesses on real sockets: one on loopback, one beyond it
with TLS. A CORS preflight got 401 (the token gate ran first, and browsers never send
credentials on a preflight); ``Authorization: Basic`` got 401 where RFC 6750 says 400
invalid_request; a server beyond loopback let any web page's requests through.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509
from grpc_support import self_signed_certificate
from mcp_support import ACCEPT, INITIALIZE, BackgroundProcess, empty_data_dir, server_env
from meshdex.node.auth import TokenStore

LOCAL_PAGE = "http://localhost:5173"  # e.g. an inspector running on this machine
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id"}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return empty_data_dir(tmp_path_factory, "mcp-gates")


@pytest.fixture(scope="module")
def read_token(store_dir: Path) -> str:
    return TokenStore(store_dir).create("read")[1]


@pytest.fixture(scope="module")
def loopback_url(store_dir: Path, read_token: str, tmp_path_factory) -> Any:
    server = BackgroundProcess(["--data-dir", str(store_dir), "mcp", "--http", "127.0.0.1:0"],
                               server_env(tmp_path_factory.mktemp("mcp-gates-env")))
    try:
        yield server.address
    finally:
        server.stop()


def _call(url: str, method: str, headers: dict[str, str], **options: Any) -> httpx2.Response:
    with httpx2.Client(timeout=60, **options) as client:
        if method == "OPTIONS":
            return client.options(url, headers=headers)
        return client.post(url, json=INITIALIZE, headers={**ACCEPT, **headers})


BROWSER_CASES = [
    # name, method, Origin (None: none sent), other headers, token sent -> status, and the
    # Access-Control-Allow-Origin the answer carries (None: none)
    ("a preflight from a page on this machine", "OPTIONS", LOCAL_PAGE, PREFLIGHT, False,
     204, LOCAL_PAGE),
    ("a preflight from https on 127.0.0.1", "OPTIONS", "https://127.0.0.1:6274", PREFLIGHT,
     False, 204, "https://127.0.0.1:6274"),
    ("a preflight from a web site", "OPTIONS", "https://evil.example", PREFLIGHT, False,
     403, None),
    ("a preflight from a look-alike name", "OPTIONS", "http://localhost.evil.example",
     PREFLIGHT, False, 403, None),
    ("a preflight from an opaque origin", "OPTIONS", "null", PREFLIGHT, False, 403, None),
    ("a call from a page on this machine", "POST", "http://127.0.0.1:6274", {}, True,
     200, "http://127.0.0.1:6274"),
    ("a call from a page on this machine, no token", "POST", LOCAL_PAGE, {}, False,
     401, LOCAL_PAGE),
    ("a call from a web site, with a token", "POST", "https://evil.example", {}, True,
     403, None),
    ("a call addressed to a rebound name", "POST", None, {"Host": "rebound.evil.example"}, True,
     421, None),
    ("a call from a program", "POST", None, {}, True, 200, None),
]


@pytest.mark.parametrize(("name", "method", "origin", "headers", "with_token", "status",
                          "allowed"), BROWSER_CASES, ids=[case[0] for case in BROWSER_CASES])
def test_only_pages_on_this_machine_may_use_a_loopback_server(
        loopback_url: str, read_token: str, name, method, origin, headers, with_token, status,
        allowed) -> None:
    sent = {**headers, **({"Origin": origin} if origin else {}),
            **({"Authorization": f"Bearer {read_token}"} if with_token else {})}
    response = _call(loopback_url, method, sent)
    assert response.status_code == status, response.text
    assert response.headers.get("Access-Control-Allow-Origin") == allowed
    if allowed and method == "OPTIONS":
        assert {"authorization", "content-type", "mcp-session-id"} <= {
            header.strip().lower()
            for header in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    if allowed and method == "POST":  # a browser client may read the challenge and session
        exposed = response.headers["Access-Control-Expose-Headers"].lower()
        assert "www-authenticate" in exposed and "mcp-session-id" in exposed
    if status >= 400:
        assert "error" in response.json()


def test_no_web_page_may_use_a_server_beyond_loopback(store_dir: Path, read_token: str,
                                                      tmp_path: Path) -> None:
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert, key = self_signed_certificate(tmp_path / "tls", names)
    trust = ssl.create_default_context(cafile=str(cert))
    config = f'[node]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    server = BackgroundProcess(["--data-dir", str(store_dir), "mcp", "--http", "0.0.0.0:0"],
                               server_env(tmp_path, config))
    try:
        url = server.address.replace("0.0.0.0", "127.0.0.1")
        token = {"Authorization": f"Bearer {read_token}"}
        preflight = _call(url, "OPTIONS", {"Origin": LOCAL_PAGE, **PREFLIGHT}, verify=trust)
        page = _call(url, "POST", {"Origin": LOCAL_PAGE, **token}, verify=trust)
        program = _call(url, "POST", token, verify=trust)
    finally:
        server.stop()
    assert url.startswith("https://")
    assert (preflight.status_code, page.status_code, program.status_code) == (403, 403, 200)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "only while it listens on loopback" in page.json()["error"]


AUTH_CASES = [
    # name, Authorization (None: no header; TOKEN: the read token) -> status, WWW-Authenticate
    ("no header", None, 401, "Bearer"),
    ("the Basic scheme", "Basic dXNlcjpwYXNz", 400, 'Bearer error="invalid_request"'),
    ("Bearer and no token", "Bearer", 400, 'Bearer error="invalid_request"'),
    ("another scheme's token", "Token 0123abcd", 400, 'Bearer error="invalid_request"'),
    ("an unknown token", "Bearer mdx_00000000_x", 401, 'Bearer error="invalid_token"'),
    ("the read token, scheme in lower case", "bearer TOKEN", 200, None),
]


@pytest.mark.parametrize(("name", "authorization", "status", "challenge"), AUTH_CASES,
                         ids=[case[0] for case in AUTH_CASES])
def test_authorization_header_is_judged_as_rfc_6750_says(loopback_url: str, read_token: str,
                                                         name, authorization, status,
                                                         challenge) -> None:
    headers = {} if authorization is None else {
        "Authorization": authorization.replace("TOKEN", read_token)}
    response = _call(loopback_url, "POST", headers)
    assert response.status_code == status, response.text
    assert response.headers.get("WWW-Authenticate") == challenge
    if status == 400:
        assert "Bearer <token>" in response.json()["error"]

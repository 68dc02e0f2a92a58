"""Service-account tokens, refreshed over real HTTP against a local token endpoint."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from interlock.errors import UpstreamUnavailable
from interlock.providers.base import UpstreamCall
from interlock.providers.google_auth import CLOUD_PLATFORM, GoogleServiceAccountAuth


def b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@dataclass
class TokenServer:
    url: str
    key: rsa.RSAPrivateKey
    grants: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False
    threads: set[int] = field(default_factory=set)


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = TokenServer("", key)

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        header, claims, sig = str(form["assertion"]).split(".")
        # The assertion must really be signed with the service account's key.
        key.public_key().verify(
            b64url(sig), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        grant = json.loads(b64url(claims))
        server.grants.append(grant)
        await asyncio.sleep(0.05)  # let concurrent callers pile up behind the refresh
        if server.fail:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "secret detail"}, status=400
            )
        n = len(server.grants)
        return web.json_response(
            {"access_token": f"ya29.token-{n}", "expires_in": 3600, "token_type": "Bearer"}
        )

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/token"
    try:
        yield server
    finally:
        await runner.cleanup()


def service_account_file(tmp_path: Path, server: TokenServer) -> str:
    pem = server.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "acme-prod",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "gateway@acme-prod.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": server.url,
            }
        )
    )
    return str(path)


def call() -> UpstreamCall:
    return UpstreamCall("POST", "https://x.test/v1/projects/p/x:generateContent", {}, b"{}")


async def test_token_fetched_once_for_concurrent_calls(
    token_server: TokenServer, tmp_path: Path
) -> None:
    auth = GoogleServiceAccountAuth(service_account_file(tmp_path, token_server))
    calls = [call() for _ in range(20)]
    await asyncio.gather(*(auth.apply(c) for c in calls))
    assert {c.headers["Authorization"] for c in calls} == {"Bearer ya29.token-1"}
    assert len(token_server.grants) == 1
    grant = token_server.grants[0]
    assert grant["iss"] == "gateway@acme-prod.iam.gserviceaccount.com"
    assert grant["aud"] == "https://oauth2.googleapis.com/token"  # google-auth fixes the audience
    assert grant["scope"] == CLOUD_PLATFORM
    # Still fresh: no second request.
    await auth.apply(call())
    assert len(token_server.grants) == 1


async def test_refresh_when_expiring(token_server: TokenServer, tmp_path: Path) -> None:
    auth = GoogleServiceAccountAuth(service_account_file(tmp_path, token_server), scopes=("a", "b"))
    await auth.apply(call())
    assert token_server.grants[0]["scope"] == "a b"
    # google-auth keeps naive UTC expiry; a minute left is inside its refresh window.
    auth._credentials.expiry = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None
    ) + datetime.timedelta(minutes=1)
    c = call()
    await auth.apply(c)
    assert c.headers["Authorization"] == "Bearer ya29.token-2"
    assert len(token_server.grants) == 2


async def test_refresh_runs_off_the_loop(
    token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = GoogleServiceAccountAuth(service_account_file(tmp_path, token_server))
    seen: list[int] = []
    original = auth._refresh

    def spy(creds: Any) -> None:
        seen.append(threading.get_ident())
        original(creds)

    monkeypatch.setattr(auth, "_refresh", spy)
    await auth.apply(call())
    assert seen and seen[0] != threading.get_ident()


async def test_refused_grant_hides_details(token_server: TokenServer, tmp_path: Path) -> None:
    token_server.fail = True
    auth = GoogleServiceAccountAuth(service_account_file(tmp_path, token_server))
    with pytest.raises(UpstreamUnavailable) as e:
        await auth.apply(call())
    assert "secret detail" not in str(e.value) and "127.0.0.1" not in str(e.value)
    token_server.fail = False
    c = call()
    await auth.apply(c)  # recovers on the next call
    assert c.headers["Authorization"].startswith("Bearer ya29.token-")


async def test_missing_file() -> None:
    with pytest.raises(UpstreamUnavailable):
        await GoogleServiceAccountAuth("/nonexistent/sa.json").apply(call())


async def test_vertex_call_over_http(
    token_server: TokenServer, tmp_path: Path, sim_url: str
) -> None:
    """GeminiAdapter(vertex=True) + this authenticator against the simulated Vertex routes."""
    import aiohttp
    import orjson
    from openai.types.chat import ChatCompletion

    from interlock.providers.base import Target
    from interlock.providers.gemini import GeminiAdapter
    from interlock.types import Endpoint, GatewayRequest

    auth = GoogleServiceAccountAuth(service_account_file(tmp_path, token_server))
    adapter = GeminiAdapter(vertex=True)
    target = Target(
        "v", "vertex", "gemini-2.5-pro", sim_url, region="europe-west4", project="acme-prod"
    )
    body = {"model": "smart", "messages": [{"role": "user", "content": "Hello!"}]}
    req = GatewayRequest(Endpoint.CHAT, "smart", body, orjson.dumps(body))
    upstream = adapter.build(req, target)
    assert "/v1/projects/acme-prod/locations/europe-west4/publishers/google/models/" in upstream.url
    await auth.apply(upstream)
    async with (
        aiohttp.ClientSession() as session,
        session.post(upstream.url, headers=upstream.headers, data=upstream.body) as resp,
    ):
        status, raw = resp.status, await resp.read()
    assert status == 200, raw
    done = adapter.parse(req, target, status, raw)
    assert ChatCompletion.model_validate_json(done.body).choices[0].message.content

    # Without the bearer token the simulated Vertex refuses, and that is the gateway's problem.
    bare = adapter.build(req, target)
    async with (
        aiohttp.ClientSession() as session,
        session.post(bare.url, headers=bare.headers, data=bare.body) as resp,
    ):
        err = adapter.error(resp.status, resp.headers, await resp.read())
    assert isinstance(err, UpstreamUnavailable) and "credentials" in err.message

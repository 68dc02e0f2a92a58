"""SigV4 signing, checked against an independent implementation of the algorithm."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import threading
import urllib.parse
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials
from yarl import URL

from interlock.errors import UpstreamUnavailable
from interlock.providers import aws_auth
from interlock.providers.aws_auth import SigV4Auth
from interlock.providers.base import UpstreamCall

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
URL_ = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"


def make_call(body: bytes = b'{"messages": []}', url: str = URL_) -> UpstreamCall:
    return UpstreamCall(
        "POST", url, {"content-type": "application/json", "accept": "application/json"}, body
    )


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def expected_signature(call: UpstreamCall, secret: str, region: str, service: str) -> str:
    """What AWS computes from the request as it arrives on the wire."""
    auth = call.headers["Authorization"]
    signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    url = URL(call.url)
    sent = {k.lower(): v for k, v in call.headers.items()}
    sent["host"] = url.raw_host if url.is_default_port() else f"{url.raw_host}:{url.port}"
    # Non-S3 services sign each path segment URI-encoded once more than it travels.
    path = urllib.parse.quote(url.raw_path, safe="/~")
    canonical = "\n".join(
        [
            call.method,
            path,
            url.raw_query_string,
            "".join(f"{h}:{sent[h].strip()}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(call.body).hexdigest(),
        ]
    )
    amz_date = call.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def signature_of(call: UpstreamCall) -> str:
    return call.headers["Authorization"].rsplit("Signature=", 1)[1]


async def test_signature_matches_independent_computation() -> None:
    auth = SigV4Auth("us-east-1", access_key_id=AK, secret_access_key=SK)
    call = make_call()
    await auth.apply(call)
    assert call.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AK}/{call.headers['X-Amz-Date'][:8]}/us-east-1/bedrock/aws4_request, "
    )
    signed = call.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert "X-Amz-Security-Token" not in call.headers
    stamp = datetime.datetime.strptime(call.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC
    )
    assert abs((datetime.datetime.now(datetime.UTC) - stamp).total_seconds()) < 60
    # The ":" in the model id travels unescaped (yarl), and is signed that way.
    assert URL(call.url).raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
    assert signature_of(call) == expected_signature(call, SK, "us-east-1", "bedrock")


async def test_session_token_body_and_resigning() -> None:
    auth = SigV4Auth(
        "eu-west-1", access_key_id=AK, secret_access_key=SK, session_token="TOKEN/xyz="
    )
    a, b = make_call(b'{"a": 1}'), make_call(b'{"a": 2}')
    await auth.apply(a)
    await auth.apply(b)
    assert a.headers["X-Amz-Security-Token"] == "TOKEN/xyz="
    assert "x-amz-security-token" in a.headers["Authorization"]
    assert signature_of(a) == expected_signature(a, SK, "eu-west-1", "bedrock")
    assert signature_of(a) != signature_of(b)
    # A retried call is signed again, not double-signed.
    await auth.apply(a)
    assert sum(1 for k in a.headers if k.lower() == "authorization") == 1
    assert signature_of(a) == expected_signature(a, SK, "eu-west-1", "bedrock")
    # Tampering with the body breaks the signature.
    a.body = b'{"a": 3}'
    assert signature_of(a) != expected_signature(a, SK, "eu-west-1", "bedrock")


async def test_arn_model_and_custom_port() -> None:
    auth = SigV4Auth("us-west-2", access_key_id=AK, secret_access_key=SK)
    call = make_call(
        url="http://127.0.0.1:8123/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A1%3Ainference-profile%2Fus.m/converse-stream"
    )
    await auth.apply(call)
    assert "%2F" in URL(call.url).raw_path
    assert signature_of(call) == expected_signature(call, SK, "us-west-2", "bedrock")


async def test_credential_chain_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    auth = SigV4Auth("us-east-1")
    call = make_call()
    await auth.apply(call)
    assert "Credential=AKIAENV/" in call.headers["Authorization"]
    assert call.headers["X-Amz-Security-Token"] == "env-token"
    assert signature_of(call) == expected_signature(call, "env-secret", "us-east-1", "bedrock")


async def test_refreshable_credentials_refresh_off_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread = threading.get_ident()
    refreshes: list[int] = []

    def refresh() -> dict[str, str]:
        refreshes.append(threading.get_ident())
        n = len(refreshes)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {
            "access_key": f"AKIAREFRESH{n}",
            "secret_key": f"secret{n}",
            "token": f"token{n}",
            "expiry_time": expiry.isoformat(),
        }

    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    creds = RefreshableCredentials.create_from_metadata(
        {
            "access_key": "AKIAOLD",
            "secret_key": "old",
            "token": "t0",
            "expiry_time": soon.isoformat(),
        },
        refresh,
        "test",
    )
    lookups: list[int] = []

    def chain() -> Any:
        lookups.append(threading.get_ident())
        return creds

    monkeypatch.setattr(aws_auth, "_chain_credentials", chain)
    auth = SigV4Auth("us-east-1")
    call = make_call()
    await auth.apply(call)
    assert lookups and lookups[0] != loop_thread
    assert refreshes and refreshes[0] != loop_thread
    assert "Credential=AKIAREFRESH1/" in call.headers["Authorization"]
    assert signature_of(call) == expected_signature(call, "secret1", "us-east-1", "bedrock")
    await auth.apply(make_call())  # fresh now: no second lookup, no second refresh
    assert len(lookups) == 1 and len(refreshes) == 1


async def test_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_auth, "_chain_credentials", lambda: None)
    with pytest.raises(UpstreamUnavailable):
        await SigV4Auth("us-east-1").apply(make_call())
    with pytest.raises(ValueError):
        SigV4Auth("us-east-1", access_key_id="x")


async def test_signature_verifies_as_received_over_http() -> None:
    """What aiohttp actually puts on the wire is what was signed (':' in the model id)."""
    import aiohttp
    from aiohttp import web

    verdicts: list[bool] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        received = UpstreamCall(
            request.method,
            f"http://{request.host}{request.raw_path}",
            {k: v for k, v in request.headers.items() if k.lower() != "host"},
            body,
        )
        verdicts.append(
            signature_of(received) == expected_signature(received, SK, "us-east-1", "bedrock")
        )
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        auth = SigV4Auth("us-east-1", access_key_id=AK, secret_access_key=SK)
        for model in ("anthropic.claude-3-5-sonnet-20240620-v1%3A0", "arn%3Aaws%3Ax%2Fy"):
            call = make_call(url=f"http://127.0.0.1:{port}/model/{model}/converse")
            await auth.apply(call)
            async with aiohttp.ClientSession() as session:
                resp = await session.post(call.url, headers=call.headers, data=call.body)
                assert resp.status == 200
                resp.release()
    finally:
        await runner.cleanup()
    assert verdicts == [True, True]

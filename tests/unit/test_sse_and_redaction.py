from __future__ import annotations

from interlock.auth import secrets
from interlock.providers.sse import SSEParser
from interlock.telemetry.redact import Redactor


def test_sse_split_at_any_byte() -> None:
    stream = b'event: a\ndata: {"x":1}\n\n: comment\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    for cut in range(len(stream)):
        p = SSEParser()
        events = p.feed(stream[:cut]) + p.feed(stream[cut:])
        assert [(e.event, e.data) for e in events] == [
            ("a", b'{"x":1}'),
            ("message", b"line1\nline2"),
            ("message", b"[DONE]"),
        ]


def test_sse_crlf_and_unterminated_tail() -> None:
    p = SSEParser()
    assert [e.data for e in p.feed(b"data: a\r\n\r\ndata: b")] == [b"a"]
    assert [e.data for e in p.flush()] == [b"b"]


def test_redactor_removes_configured_and_shaped_secrets() -> None:
    r = Redactor(["my-provider-secret"])
    text = (
        "bad key my-provider-secret; also sk-abcdef1234567890 at https://api.example.com/v1?key=1"
    )
    out = r(text)
    assert (
        "my-provider-secret" not in out and "sk-abcdef" not in out and "api.example.com" not in out
    )


def test_key_format_and_verification() -> None:
    k = secrets.new_key(b"pepper")
    assert k.token.startswith("sk-il-")
    assert secrets.split_token(k.token) == (k.key_id, k.secret)
    assert secrets.verify(b"pepper", k.salt, k.hash, k.secret)
    assert not secrets.verify(b"pepper", k.salt, k.hash, k.secret + "x")
    assert secrets.split_token("sk-il-short") is None

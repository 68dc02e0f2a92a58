"""Upload parsing without a server: the multipart splitter and the JSONL line checks."""

from __future__ import annotations

import orjson
import pytest

from interlock.api import multipart
from interlock.errors import InvalidRequest, UnsupportedMediaType
from interlock.jobs.batch import lines

CT = "multipart/form-data; boundary=XyZ"


def _form(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--XyZ\r\nContent-Disposition: " + disp.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--XyZ--\r\n"


def test_multipart_parts_keep_their_bytes_exactly() -> None:
    data = b"line one\r\n--XyZnot-a-boundary\r\n\x00\xff"
    parts = multipart.parse(_form(("purpose", None, b"batch"), ("file", "a.jsonl", data)), CT)
    assert parts["purpose"].data == b"batch" and parts["purpose"].filename is None
    assert parts["file"].data == data and parts["file"].filename == "a.jsonl"
    quoted = multipart.parse(_form(("file", "b", b"x")), 'multipart/form-data; boundary="XyZ"')
    assert quoted["file"].data == b"x"


@pytest.mark.parametrize(
    "body",
    [b"", b"--XyZ", b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--",
     b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end", b"--XyZjunk"],
)  # fmt: skip
def test_malformed_multipart_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as exc:
        multipart.parse(body, CT)
    assert exc.value.code == "invalid_multipart"


def test_only_multipart_form_data_is_accepted() -> None:
    with pytest.raises(UnsupportedMediaType):
        multipart.boundary("application/json")
    with pytest.raises(InvalidRequest):
        multipart.boundary("multipart/form-data")


def _line(cid: str, **extra: object) -> bytes:
    return orjson.dumps({"custom_id": cid, "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "m", "input": "x"}, **extra})  # fmt: skip


def test_lines_are_numbered_from_one_and_blank_lines_skipped() -> None:
    parsed = lines.parse(b"\n".join([_line("a"), b"", _line("b"), b""]), max_lines=10)
    assert [(x.number, x.custom_id, x.url) for x in parsed] == [
        (1, "a", "/v1/embeddings"),
        (3, "b", "/v1/embeddings"),
    ]


def test_only_the_first_bad_lines_are_listed() -> None:
    data = b"\n".join([b"[]"] * 30)
    with pytest.raises(lines.InvalidBatchFile) as exc:
        lines.parse(data, max_lines=100)
    assert exc.value.bad_lines == 30 and len(exc.value.lines) == lines.MAX_REPORTED
    assert exc.value.lines[0].view() == {
        "line": 1, "code": "invalid_json", "message": "the line must be a JSON object", "param": None
    }  # fmt: skip


def test_the_body_check_names_the_body_field() -> None:
    def check(url: str, body: dict[str, object]) -> None:
        raise InvalidRequest("no", code="invalid_value", param="input")

    with pytest.raises(lines.InvalidBatchFile) as exc:
        lines.parse(_line("a"), max_lines=1, check=check)
    assert exc.value.lines[0].param == "body.input"
    with pytest.raises(InvalidRequest) as too_many:
        lines.parse(b"\n".join([_line("a"), _line("b")]), max_lines=1)
    assert too_many.value.code == "too_many_lines"
    with pytest.raises(lines.InvalidBatchFile):
        lines.parse(_line("x" * 513), max_lines=1)

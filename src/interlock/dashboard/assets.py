"""The page's files, read once from the package and served from memory.

Only the files listed here can be fetched (no path from the URL ever reaches the file
system), each with a strong ETag so a reload costs a 304. The page's Content-Security-
Policy allows scripts, styles and requests from this origin only: the admin key lives in
the tab's sessionStorage, so no third-party or inline script may run beside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
# Served under /dashboard/static/<name>; index.html is the page at /dashboard.
FILES = (
    "index.html",
    "dashboard.js",
    "dashboard.css",
    "uPlot.iife.min.js",
    "uPlot.min.css",
    "uPlot.LICENSE",
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def asset(name: str) -> Asset | None:
    """The named file, or None when it is not one of :data:`FILES`."""
    if name not in FILES:
        return None
    body = resources.files("interlock.dashboard").joinpath("static", name).read_bytes()
    suffix = ".LICENSE" if name.endswith(".LICENSE") else name[name.rfind(".") :]
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, _TYPES[suffix], etag)

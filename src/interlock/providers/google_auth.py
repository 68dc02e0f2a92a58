"""OAuth access tokens for Vertex AI from a service account (or Application Default
Credentials), applied as ``Authorization: Bearer`` right before a call leaves.

google-auth refreshes synchronously over ``requests``; the refresh runs in a worker
thread, only when the token is missing or about to expire, and once for however many
requests are waiting on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import google.auth
import google.auth.exceptions
from google.auth.credentials import TokenState
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from interlock.errors import UpstreamUnavailable
from interlock.providers.base import UpstreamCall

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


class GoogleServiceAccountAuth:
    def __init__(
        self, credentials_file: str | None, scopes: Sequence[str] = (CLOUD_PLATFORM,)
    ) -> None:
        self.credentials_file = credentials_file
        self.scopes = tuple(scopes)
        self._credentials: Any = None
        self._request: Request | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        if self.credentials_file is not None:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                self.credentials_file, scopes=list(self.scopes)
            )
        creds, _project = google.auth.default(scopes=list(self.scopes))
        return creds

    def _refresh(self, creds: Any) -> None:
        if self._request is None:
            self._request = Request()
        creds.refresh(self._request)

    @staticmethod
    def _fresh(creds: Any) -> bool:
        return creds is not None and creds.token_state == TokenState.FRESH

    async def token(self) -> str:
        creds = self._credentials
        if not self._fresh(creds):
            async with self._lock:
                try:
                    if self._credentials is None:
                        self._credentials = await asyncio.to_thread(self._load)
                    creds = self._credentials
                    if not self._fresh(creds):
                        await asyncio.to_thread(self._refresh, creds)
                except (google.auth.exceptions.GoogleAuthError, OSError, ValueError):
                    # Never the library's text: it may quote the key file or token URL.
                    raise UpstreamUnavailable(
                        "provider vertex: could not obtain a Google access token"
                    ) from None
        token = creds.token
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailable("provider vertex: could not obtain a Google access token")
        return token

    async def apply(self, call: UpstreamCall) -> None:
        call.headers["Authorization"] = f"Bearer {await self.token()}"

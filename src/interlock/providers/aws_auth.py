"""AWS Signature Version 4 for Bedrock calls, applied right before a call leaves.

Signing itself is botocore's; this module only decides which credentials sign and
keeps the blocking parts (the credential chain may read files or call the instance
metadata service, refreshes may call STS) off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import botocore.auth
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError
from yarl import URL

from interlock.errors import UpstreamUnavailable
from interlock.providers.base import UpstreamCall

# Set by the signer; removed before re-signing a retried call.
_SIGNING_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


def _chain_credentials() -> Any:
    return botocore.session.Session().get_credentials()


class SigV4Auth:
    """Signs :class:`UpstreamCall` s with SigV4 for ``service`` in ``region``."""

    def __init__(
        self,
        region: str,
        service: str = "bedrock",
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        if bool(access_key_id) != bool(secret_access_key):
            raise ValueError("access_key_id and secret_access_key go together")
        self.region = region
        self.service = service
        self._credentials: Any = (
            Credentials(access_key_id, secret_access_key, session_token) if access_key_id else None
        )
        self._lock = asyncio.Lock()

    async def _frozen(self) -> ReadOnlyCredentials:
        creds = self._credentials
        try:
            if creds is None:
                async with self._lock:
                    if self._credentials is None:
                        found = await asyncio.to_thread(_chain_credentials)
                        if found is None:
                            raise UpstreamUnavailable(
                                "provider bedrock: no AWS credentials found for the gateway"
                            )
                        self._credentials = found
                    creds = self._credentials
            if isinstance(creds, RefreshableCredentials) and creds.refresh_needed():
                # A refresh may call STS or the metadata service: never on the loop,
                # and only once however many requests are waiting for it.
                async with self._lock:
                    return await asyncio.to_thread(creds.get_frozen_credentials)
            frozen: ReadOnlyCredentials = creds.get_frozen_credentials()
            return frozen
        except BotoCoreError:
            raise UpstreamUnavailable(
                "provider bedrock: the gateway's AWS credentials could not be resolved"
            ) from None

    async def apply(self, call: UpstreamCall) -> None:
        frozen = await self._frozen()
        # Sign the URL exactly as the HTTP client will send it: yarl (under aiohttp)
        # unquotes characters such as ":" in a path, and SigV4 signs the path as sent.
        call.url = str(URL(call.url))
        for name in [k for k in call.headers if k.lower() in _SIGNING_HEADERS]:
            del call.headers[name]
        request = AWSRequest(method=call.method, url=call.url, data=call.body, headers=call.headers)
        signer = botocore.auth.SigV4Auth(
            Credentials(frozen.access_key, frozen.secret_key, frozen.token),
            self.service,
            self.region,
        )
        signer.add_auth(request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            value = request.headers.get(name)
            if value is not None:
                call.headers[name] = value

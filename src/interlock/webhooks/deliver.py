"""Deliver one webhook: sign, POST to a checked and pinned address, retry, report.

One :meth:`WebhookSender.deliver` call is one delivery: it returns when the receiver
answered 2xx, answered 410 Gone (the endpoint is then disabled), the URL proved unsafe,
or the attempts or the total time ran out. It never raises for a receiver's behaviour.

Rules, and why:

* Any non-2xx is a failure, 3xx included, and redirects are never followed: a redirect
  is the easiest way to bounce an SSRF-checked request onto an internal address.
* 410 Gone disables the URL in this sender and is reported (``DeliveryResult.disabled``
  and the ``on_disabled`` callback) so the caller can persist it; later deliveries to
  that URL are refused without a request.
* 429 and 503 may carry ``Retry-After`` (seconds or an HTTP date); the next attempt
  waits at least that long, capped by ``max_retry_after_s``.
* Timeouts and connection errors are retried; an unsafe URL never is.
* The payload is exactly what the caller passes. Callers must pass job results without
  keys or secrets: the receiver is a third party.
* Logs show the URL's origin only: webhook paths and query strings routinely carry
  tokens (Slack, Discord), and the signing secret is never logged or echoed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from interlock.webhooks.pinning import PinnedResolver, pinned
from interlock.webhooks.schedule import RetrySchedule, parse_retry_after
from interlock.webhooks.signing import (
    build_body,
    check_webhook_id,
    load_secret,
    new_webhook_id,
    sign_headers,
)
from interlock.webhooks.ssrf import (
    Allowlist,
    AllowlistLike,
    Lookup,
    UnsafeWebhookURL,
    WebhookTarget,
    check_url,
    resolve_safe,
)

log = logging.getLogger("interlock.webhooks")

USER_AGENT = "Interlock-Webhooks/1"
_RETRY_AFTER_STATUSES = frozenset({429, 503})

Sleep = Callable[[float], Awaitable[None]]
OnDisabled = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one delivery ended. ``status`` is the last attempt's HTTP status, if it got one."""

    webhook_id: str
    delivered: bool
    attempts: int
    status: int | None = None
    disabled: bool = False  # the endpoint answered 410 Gone (now or earlier): stop using it
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    fatal: bool = False  # no later attempt can do better (unsafe URL)


def _describe(exc: BaseException) -> str:
    """An error text without the URL (aiohttp messages may embed it, query and all)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"connection failed: {reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection failed: {exc.strerror}"
    return f"request failed: {type(exc).__name__}"


class WebhookSender:
    """Signs and delivers webhooks over one pooled, SSRF-guarded aiohttp session.

    ``secret`` is a ``whsec_`` secret (or several during a rotation: every one signs).
    ``sleep``, ``rand``, ``clock`` and ``lookup`` are injectable for tests; ``ssl_context``
    lets an operator trust a private CA. Use as ``async with`` or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        secret: str | Sequence[str],
        timeout_s: float = 15.0,
        max_attempts: int = 8,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        max_total_s: float = 900.0,
        max_retry_after_s: float | None = None,
        allow: AllowlistLike = (),
        disabled_urls: Iterable[str] = (),
        on_disabled: OnDisabled | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        lookup: Lookup | None = None,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        self._keys = [load_secret(s) for s in secrets]
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self.schedule = RetrySchedule(
            max_attempts=max_attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            max_total_s=max_total_s,
            max_retry_after_s=max_delay_s if max_retry_after_s is None else max_retry_after_s,
        )
        self.allow = Allowlist.parse(allow)
        self._disabled: set[str] = set()
        for url in disabled_urls:
            self._disabled.add(self._key(url))
        self._on_disabled = on_disabled
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._lookup = lookup
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    @staticmethod
    def _key(url: str) -> str:
        """The form disabled URLs are remembered in: yarl-normalised, fragment dropped."""
        try:
            return str(URL(url).with_fragment(None))
        except (ValueError, UnicodeError):
            return url

    def is_disabled(self, url: str) -> bool:
        return self._key(url) in self._disabled

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=PinnedResolver(), use_dns_cache=False, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),  # one receiver's cookies never reach another
                trust_env=False,  # no proxy from the environment: we pin the destination
                headers={"User-Agent": self._user_agent},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def deliver(
        self,
        url: str,
        event_type: str,
        data: dict[str, Any],
        *,
        webhook_id: str | None = None,
        raw_body: bytes | None = None,
    ) -> DeliveryResult:
        """Deliver ``data`` as event ``event_type`` to ``url``, retrying as the module says.

        ``raw_body``, when given, is sent instead of the Standard Webhooks envelope (still
        signed, with the same SSRF guard and retries): Slack-compatible receivers want
        their own shape, ``{"text": ...}``.

        Raises only for the caller's own mistakes (bad ``event_type``/``webhook_id``, data
        that is not JSON-serialisable); everything about the receiver is in the result.
        """
        wid = check_webhook_id(webhook_id) if webhook_id is not None else new_webhook_id()
        body = raw_body if raw_body is not None else build_body(event_type, data)
        try:
            target = check_url(url, self.allow)
        except UnsafeWebhookURL as exc:
            log.warning("webhook %s refused: %s", wid, exc)
            return DeliveryResult(wid, delivered=False, attempts=0, error=str(exc))
        key = self._key(url)
        if key in self._disabled:
            return DeliveryResult(
                wid, False, 0, disabled=True, error="endpoint disabled after 410 Gone"
            )
        schedule = self.schedule
        deadline = self._clock() + schedule.max_total_s
        attempts = 0
        while True:
            attempts += 1
            timeout = min(self.timeout_s, max(deadline - self._clock(), 0.001))
            outcome = await self._attempt(target, wid, body, timeout)
            status = outcome.status
            if status is not None and 200 <= status < 300:
                log.info("webhook %s delivered to %s (attempt %d)", wid, target.origin, attempts)
                return DeliveryResult(wid, True, attempts, status)
            if status == 410:
                log.warning("webhook endpoint %s answered 410 Gone; disabling it", target.origin)
                self._disabled.add(key)
                if self._on_disabled is not None:
                    try:
                        await self._on_disabled(url)
                    except Exception:
                        # The result still says disabled=True; the caller can persist it.
                        log.exception("webhook on_disabled callback failed")
                return DeliveryResult(wid, False, attempts, status, disabled=True, error="410 Gone")
            error = outcome.error or f"HTTP {status}"
            if outcome.fatal:
                log.warning("webhook %s refused: %s", wid, error)
                return DeliveryResult(wid, False, attempts, status, error=error)
            if attempts >= schedule.max_attempts:
                log.warning(
                    "webhook %s to %s failed after %d attempts: %s",
                    wid,
                    target.origin,
                    attempts,
                    error,
                )
                return DeliveryResult(wid, False, attempts, status, error=error)
            delay = schedule.delay(attempts - 1, self._rand, outcome.retry_after)
            if self._clock() + delay >= deadline:
                log.warning(
                    "webhook %s to %s gave up: retry window of %.0fs exhausted: %s",
                    wid,
                    target.origin,
                    schedule.max_total_s,
                    error,
                )
                return DeliveryResult(wid, False, attempts, status, error=error)
            log.info(
                "webhook %s to %s failed (attempt %d/%d): %s; retrying in %.2fs",
                wid,
                target.origin,
                attempts,
                schedule.max_attempts,
                error,
                delay,
            )
            await self._sleep(delay)

    async def _attempt(
        self, target: WebhookTarget, webhook_id: str, body: bytes, budget_s: float
    ) -> _Attempt:
        headers = {
            "Content-Type": "application/json",
            **sign_headers(self._keys, webhook_id, body),
        }
        try:
            async with asyncio.timeout(budget_s):
                addresses = await resolve_safe(
                    target.host, target.port, self.allow, lookup=self._lookup
                )
                with pinned(target.host, addresses):
                    async with self._client().post(
                        target.url, data=body, headers=headers, allow_redirects=False
                    ) as resp:
                        status = resp.status
                        retry_after = (
                            parse_retry_after(resp.headers.get("Retry-After"))
                            if status in _RETRY_AFTER_STATUSES
                            else None
                        )
        except UnsafeWebhookURL as exc:
            return _Attempt(error=str(exc), fatal=True)
        except aiohttp.InvalidURL as exc:
            return _Attempt(error=_describe(exc), fatal=True)
        except TimeoutError:
            return _Attempt(error=f"timed out after {budget_s:.3g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return _Attempt(error=_describe(exc))
        return _Attempt(status=status, retry_after=retry_after)

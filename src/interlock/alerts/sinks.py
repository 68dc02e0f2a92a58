"""Where alerts go: a signed generic webhook, a Slack-compatible webhook, the log.

Both webhook kinds deliver through :class:`~interlock.webhooks.WebhookSender`, so they
get its SSRF guard (private addresses refused unless ``alerts.allow_hosts`` lists them),
pinned DNS, retries and Standard Webhooks signature headers. The generic sink sends
``{"type": "alert.firing"|"alert.resolved", "timestamp", "data": <alert>}``; the Slack
sink sends ``{"text": "..."}``, the shape Slack, Mattermost and Rocket.Chat accept.
Payloads hold the alert only: rule, severity, value, threshold, summary.
"""

from __future__ import annotations

import logging
from typing import Protocol

import orjson

from interlock.alerts.engine import Alert
from interlock.webhooks import WebhookSender

log = logging.getLogger("interlock.alerts")

_EMOJI = {"critical": ":red_circle:", "warning": ":warning:"}


class Sink(Protocol):
    async def send(self, alert: Alert, state: str) -> bool: ...


class LogSink:
    async def send(self, alert: Alert, state: str) -> bool:
        level = logging.INFO if state == "resolved" else logging.WARNING
        log.log(
            level,
            "alert %s: %s",
            state,
            alert.summary,
            extra={
                "event": "alert",
                "alert_id": alert.id,
                "rule": alert.rule,
                "severity": alert.severity,
                "state": state,
                "value": alert.value,
                "threshold": alert.threshold,
            },
        )
        return True


class WebhookSink:
    def __init__(self, sender: WebhookSender, url: str) -> None:
        self._sender = sender
        self._url = url

    async def send(self, alert: Alert, state: str) -> bool:
        result = await self._sender.deliver(self._url, f"alert.{state}", alert.to_dict())
        return result.delivered


class SlackSink:
    def __init__(self, sender: WebhookSender, url: str) -> None:
        self._sender = sender
        self._url = url

    async def send(self, alert: Alert, state: str) -> bool:
        if state == "resolved":
            text = f":white_check_mark: resolved: {alert.summary.split(': ', 1)[-1]}"
        else:
            text = f"{_EMOJI.get(alert.severity, '')} {alert.summary}".strip()
        body = orjson.dumps({"text": f"[Interlock] {text}"})
        result = await self._sender.deliver(self._url, f"alert.{state}", {}, raw_body=body)
        return result.delivered

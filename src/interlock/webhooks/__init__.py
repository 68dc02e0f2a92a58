"""Outbound webhooks: Standard Webhooks signing, retries with backoff, SSRF-safe delivery.

The public surface is re-exported here; see ``docs/webhooks.md`` for how to use it and
the submodules' docstrings for why each rule exists.
"""

from interlock.webhooks.deliver import DeliveryResult, WebhookSender
from interlock.webhooks.schedule import RetrySchedule, parse_retry_after
from interlock.webhooks.signing import generate_secret, new_webhook_id
from interlock.webhooks.ssrf import (
    Allowlist,
    UnsafeWebhookURL,
    WebhookTarget,
    blocked_reason,
    check_url,
    resolve_safe,
)

__all__ = [
    "Allowlist",
    "DeliveryResult",
    "RetrySchedule",
    "UnsafeWebhookURL",
    "WebhookSender",
    "WebhookTarget",
    "blocked_reason",
    "check_url",
    "generate_secret",
    "new_webhook_id",
    "parse_retry_after",
    "resolve_safe",
]

"""The composition root and the one request path (``Gateway.handle``)."""

from interlock.gateway.core import Gateway, Readiness

__all__ = ["Gateway", "Readiness"]

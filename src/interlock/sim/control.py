"""A small synchronous client for the simulator's control API (``/_sim/...``)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

__all__ = ["SimControl", "SimControlError"]


class SimControlError(RuntimeError):
    """The control API answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"sim control API returned {status}: {body}")
        self.status = status
        self.body = body


class SimControl:
    """``SimControl("http://127.0.0.1:PORT")``: read and change a running simulator."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SimControl({self.url!r})"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        req = urllib.request.Request(  # noqa: S310 - the URL is the caller's simulator
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise SimControlError(exc.code, exc.read().decode("utf-8", "replace")) from None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/health")
        return result

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/config")
        return result

    def set_config(self, **partial: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", "/_sim/config", partial)
        return result

    def set_faults(self, faults: list[dict[str, Any]]) -> dict[str, Any]:
        return self.set_config(faults=faults)

    def faults(self) -> list[dict[str, Any]]:
        """Active faults, each with ``remaining`` (None = unlimited)."""
        result: list[dict[str, Any]] = self._call("GET", "/_sim/faults")
        return result

    def reset(self, initial: bool = False, **overrides: Any) -> dict[str, Any]:
        """Clear ledger, request log and faults; optionally restore the startup config
        (``initial=True``) and/or set config keys."""
        body: dict[str, Any] = dict(overrides)
        if initial:
            body["initial"] = True
        result: dict[str, Any] = self._call("POST", "/_sim/reset", body)
        return result

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/ledger")
        return result

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sim/requests")
        return result

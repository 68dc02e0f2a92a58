"""The image's HEALTHCHECK: GET /healthz on the port the gateway listens on.

The port is $INTERLOCK_PORT when set, else `server.port` of the configuration file
($INTERLOCK_CONFIG), else 8080 (the configuration's default), so a configuration that moves
the gateway to another port keeps the container healthy. Standard library + PyYAML only
(both in the image); exit 0 healthy, 1 not.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request

import yaml

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def port() -> int:
    explicit = os.environ.get("INTERLOCK_PORT")
    if explicit:
        return int(explicit)
    path = os.environ.get("INTERLOCK_CONFIG", "/etc/interlock/interlock.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError:
        return 8080
    value = (data.get("server") or {}).get("port", 8080)
    if isinstance(value, str):  # "${VAR:-8080}": resolved like the gateway does
        value = _ENV.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)
    return int(value)


def main() -> int:
    url = f"http://127.0.0.1:{port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Ray cluster addresses: fail fast, before ``ray.init``, when one cannot be reached.

No Ray import at module level (``auto`` asks Ray where ``ray start`` left its address).
"""

from __future__ import annotations

import os
import socket
import urllib.parse

from trainables.errors import InputError


def check_address(address: str | None, timeout: float = 2.0) -> str | None:
    """Raise InputError when a Ray address cannot be reached; returns the address.

    ``None``: the embedded local Ray (nothing to check). ``auto``: ``RAY_ADDRESS`` or the
    cluster ``ray start`` recorded on this machine. ``HOST:PORT`` / ``ray://HOST:PORT``: a TCP
    connect to the port must succeed within ``timeout`` seconds.
    """
    if address is None:
        return None
    target = address
    if address == "auto":
        target = os.environ.get("RAY_ADDRESS") or _current_cluster_address() or ""
        if not target or target == "auto":
            raise InputError(
                "--address auto: no running Ray cluster found on this machine; start one with "
                "`ray start --head` or give --address HOST:PORT"
            )
    host, port = host_port(target)
    if not port_open(host, port, timeout):
        raise InputError(f"Ray at {address!r} ({host}:{port}) is unreachable")
    return address


def _current_cluster_address() -> str | None:
    """The GCS address the last ``ray start`` on this machine recorded (Ray's own lookup)."""
    try:
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
    except Exception:
        return None
    return str(found) if found else None


def host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``ray://HOST:PORT`` -> ``(host, port)``."""
    parsed = urllib.parse.urlparse(address if "://" in address else f"ray://{address}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None:
        raise InputError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    return parsed.hostname, port


def port_open(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts TCP connections at ``host:port`` within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

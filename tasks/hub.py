"""The Hugging Face hub, asked once per process whether it can be reached. Without a network its
client retries every file for tens of seconds before it gives up (or falls back to its cache); found
unreachable, the hub client and datasets are put in offline mode for the rest of the process, so
that a cached model or dataset loads at once and anything else fails at once."""

from __future__ import annotations

import functools
import os
import socket
import sys
import urllib.request
from urllib.parse import urlparse

PROBE_SECONDS = 3  # a connection to the hub's host that takes longer is no connection worth waiting for


def _offline_by_setting() -> bool:
    """Whether the person set HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), as the hub reads it ("0" is
    not set): the hub's own flag may have been switched by offline_unless_reachable since."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in ("1", "ON", "YES", "TRUE")


def _behind_proxy(scheme: str, host: str) -> bool:
    """Whether the hub client reaches `host` through a proxy (environment or system settings), where a
    direct connection's failure says nothing."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def connect(address: tuple[str, int], timeout: float) -> None:
    """Open and close a TCP connection to `address` (every address its name resolves to is tried)."""
    socket.create_connection(address, timeout=timeout).close()


@functools.cache
def offline_unless_reachable() -> bool:
    """Put the hub client and datasets in offline mode where the hub's host (HF_ENDPOINT's, a mirror's
    too) takes no connection; whether this did. Not probed behind a proxy, nor where already offline."""
    import huggingface_hub.constants as hub

    endpoint = urlparse(hub.ENDPOINT)
    if _offline_by_setting() or hub.HF_HUB_OFFLINE or not endpoint.hostname \
            or _behind_proxy(endpoint.scheme, endpoint.hostname):
        return False
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        connect((endpoint.hostname, port), PROBE_SECONDS)
        return False
    except OSError:
        pass
    hub.HF_HUB_OFFLINE = True  # read at each lookup
    if "datasets.config" in sys.modules:  # copied from the hub's when datasets was imported
        sys.modules["datasets.config"].HF_HUB_OFFLINE = True
    return True


def hub_hint() -> str:
    """What to add to a failed hub lookup's message: that the hub was found unreachable and only the
    local cache was looked in; else, where HF_HUB_OFFLINE is not set, that setting it makes such a
    lookup fail at once, not after a round of retries."""
    if offline_unless_reachable.cache_info().currsize and offline_unless_reachable():
        import huggingface_hub.constants as hub

        return f"; {urlparse(hub.ENDPOINT).hostname} cannot be reached from here, so only the local cache was looked in"
    if _offline_by_setting():
        return ""
    return "; without a network, HF_HUB_OFFLINE=1 says so at once instead of retrying"

"""The Hugging Face hub, asked once per process whether it can be reached. Without a network its
client retries every file for tens of seconds before it gives up (or falls back to its cache); found
unreachable, the hub client and datasets are put in offline mode, so that a cached model or dataset
loads at once and anything else fails at once."""

from __future__ import annotations

import functools
import os
import socket
import sys
from urllib.parse import urlparse

PROBE_SECONDS = 3  # a connection to the hub's host that takes longer is no connection worth waiting for
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _offline_by_setting() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, as the hub reads it ("0" is not set)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in ("1", "ON", "YES", "TRUE")


@functools.cache
def offline_unless_reachable() -> bool:
    """Put the hub client and datasets in offline mode where the hub's host takes no connection;
    whether this did. Behind a proxy the host is not probed: a direct connection says nothing there."""
    import huggingface_hub.constants as hub

    if _offline_by_setting() or hub.HF_HUB_OFFLINE or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return False
    endpoint = urlparse(hub.ENDPOINT)
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=PROBE_SECONDS):
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

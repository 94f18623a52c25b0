"""Fields of this process's /proc/self/status (Linux): what the standard library cannot read
without side effects (the umask) or at all (the peak resident set since a reset)."""

from __future__ import annotations

import re
from pathlib import Path

STATUS = Path("/proc/self/status")


def status_field(name: str) -> str | None:
    """The value of `name:` in /proc/self/status ("0022", "123456 kB"); None without that file or field."""
    try:
        match = re.search(rf"^{re.escape(name)}:\s+(.+)$", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1).strip() if match else None

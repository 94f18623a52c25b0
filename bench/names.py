"""Names made safe for paths: hub ids (`org/model`) and task card paths hold slashes."""

from __future__ import annotations

import re


def file_part(text: str) -> str:
    """A path- and shell-safe fragment of `text`: runs of other characters become one `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")

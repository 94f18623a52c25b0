"""Names made safe for paths: hub ids (`org/model`) and task card paths hold slashes."""

from __future__ import annotations

import re
from pathlib import Path


def is_folder_name(name: str) -> bool:
    """Whether `name` names one folder inside another (no `/`, not `.` or `..`): results/<name> stays in results/."""
    return bool(name) and Path(name).name == name and name not in (".", "..")


def file_part(text: str) -> str:
    """A path- and shell-safe fragment of `text`: runs of other characters become one `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")

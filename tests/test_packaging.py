"""What a wheel or non-editable install carries: every data file the packages read at run time."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parent.parent


def test_every_data_file_of_the_packages_is_declared_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = config["package-data"]
    for package in ("bench", "search", "tasks"):
        folder = ROOT / package
        data = [p for p in folder.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"}
                and "__pycache__" not in p.parts]
        missing = [str(p.relative_to(ROOT)) for p in data
                   if not any(p.relative_to(folder).match(glob) for glob in declared.get(package, []))]
        assert not missing, f"not in [tool.setuptools.package-data] {package}: {missing}"

"""What `pip install .` (the Docker image) installs: every module of the source tree and the data files, all under
the `leadflow` namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "schemas", "streams")


def test_the_wheel_holds_every_module_and_data_file_of_the_source_tree(tmp_path: Path) -> None:
    # Built from a copy: setuptools builds in the source tree, and a `build/` left there would hide what is missing.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "leadflow", source / "leadflow", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("leadflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        "leadflow/" + path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for pattern in ("*.py", "*.yaml", "*.j2")
        for path in (ROOT / package).rglob(pattern)
        if "__pycache__" not in path.parts
    }
    assert sources, "no source files found"
    assert sorted(sources - names) == []
    # Nothing outside the namespace: a top-level `core` would clash with other distributions.
    assert {name.split("/")[0] for name in names} == {"leadflow", f"leadflow-{wheel.name.split('-')[1]}.dist-info"}

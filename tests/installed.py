"""The project as `pip install` users get it: its wheel, built from this checkout and
installed into a venv of its own, run from a directory outside the checkout.

The venv sees this machine's site-packages (pyinfra and the other dependencies are already
installed there, by scripts/setup.sh), so nothing is downloaded; the wheel itself is
installed with --no-deps --no-index, and `pip check` proves its declared dependencies are met.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from; a copy, so the build leaves nothing in the checkout.
SOURCES = ("pyproject.toml", "README.md", "mgmt_vrf", "files")
# A user's whole deploy file, as the README gives it.
USER_DEPLOY = "from mgmt_vrf.pyinfra.deploy import management_vrf\n\nmanagement_vrf()\n"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # an empty directory outside the checkout, for the user's own files

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """A command of the venv, run in `cwd` with nothing of the checkout on its path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MGMT_VRF_FLEET")}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        return subprocess.run(
            [self.bin(argv[0]), *argv[1:]],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(argv: list[str], **kwargs: object) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"


def copy_sources(source: Path) -> Path:
    """What the packages are built from, copied to `source`."""
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    return source


def install(where: Path) -> Installed:
    """Build the wheel into `where`/dist and install it into `where`/venv."""
    source = copy_sources(where / "source")
    dist = where / "dist"
    _check(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(source)],
        cwd=source,
    )  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    venv = where / "venv"
    _check([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _check([*pip, "install", "--no-deps", "--no-index", str(wheel)])
    _check([*pip, "check"])
    cwd = where / "project"
    cwd.mkdir()
    return Installed(wheel, venv, cwd)

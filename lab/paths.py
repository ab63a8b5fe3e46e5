"""Where the lab keeps its runtime state and cache."""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import LabError

LAB_DIR = Path(__file__).resolve().parent
GUEST_DIR = LAB_DIR / "guest"


# The VM mounts its own filesystems there, hiding this machine's files from the guest.
HIDDEN_IN_VM = ("/tmp", "/run", "/proc", "/sys", "/dev", "/var/run")


def run_dir() -> Path:
    # LAB_RUN_DIR lets CI or a second checkout keep its lab apart; the default sits
    # inside the package so `lab/run/fleet.toml` is where the README says it is.
    path = Path(os.environ.get("LAB_RUN_DIR", LAB_DIR / "run")).resolve()
    for hidden in HIDDEN_IN_VM:
        if path == Path(hidden) or Path(hidden) in path.parents:
            raise LabError(
                f"LAB_RUN_DIR={path} is under {hidden}, which the lab VM cannot see; "
                "choose a directory elsewhere (for example under /var/tmp or the checkout)"
            )
    return path


def cache_dir() -> Path:
    return run_dir() / "cache"


# The NetworkManager versions the lab's hosts can run (LAB_NM), each built by
# lab/build-networkmanager.sh, with the AlmaLinux release that ships it: the hosts say they
# are that release.
NETWORKMANAGER_RELEASES = {
    "1.40.16": ("8.10", "Cerulean Leopard"),
    "1.42.4": ("9.2", "Turquoise Kodkod"),
    "1.48.10": ("9.5", "Teal Serval"),
    "1.54.0": ("10.1", "Heliotrope Lion"),
}
# The blog's release, which a host without NetworkManager says it is.
BLOG_RELEASE = ("8.7", "Stone Smilodon")
# Built without ifcfg-rh, as AlmaLinux 10 ships it: its hosts come with the keyfiles an
# installer writes and no ifcfg file.
KEYFILE_ONLY = ("1.54.0",)
DEFAULT_NETWORKMANAGER = "1.42.4"
# In LAB_NM, a host without NetworkManager: the lab's own script brings its links up, as the
# legacy network-scripts do on an AlmaLinux 8 host where NetworkManager is disabled.
NO_NETWORKMANAGER = "none"


def networkmanager_versions() -> list[str]:
    """LAB_NM: one version for every host, or a comma-separated list: lab1 runs the first,
    lab2 the second, ..., and the hosts beyond the list the last one. NO_NETWORKMANAGER in
    the list: that host runs none."""
    raw = os.environ.get("LAB_NM", DEFAULT_NETWORKMANAGER)
    versions = [v.strip() for v in raw.split(",")]
    for version in versions:
        if version not in (*NETWORKMANAGER_RELEASES, NO_NETWORKMANAGER):
            raise LabError(
                f"LAB_NM={raw!r}: {version!r} is not a version the lab runs; use one of "
                f"{', '.join(NETWORKMANAGER_RELEASES)} (or a comma-separated list of them, "
                f"one per host, {NO_NETWORKMANAGER!r} for a host without NetworkManager), "
                f"or leave it unset for {DEFAULT_NETWORKMANAGER}"
            )
    if "LAB_NM_DIR" in os.environ and len(set(versions) - {NO_NETWORKMANAGER}) > 1:
        raise LabError(f"LAB_NM_DIR names one build, LAB_NM={raw!r} asks for several")
    return versions


def host_networkmanager(versions: list[str], index: int) -> str | None:
    """The version host `index` (1-based) runs; None: no NetworkManager."""
    version = versions[min(index, len(versions)) - 1]
    return None if version == NO_NETWORKMANAGER else version


def networkmanager_dir(version: str) -> Path:
    """What lab/build-networkmanager.sh builds of `version` (any run dir)."""
    default = LAB_DIR / "cache" / f"networkmanager-{version}"
    return Path(os.environ.get("LAB_NM_DIR", default)).resolve()


# The `ip` of AlmaLinux 8 (iproute 5.18.0), built by lab/build-iproute2.sh.
IPROUTE2_VERSIONS = ("5.18.0",)


def iproute2_dir() -> Path | None:
    """The hosts' own `ip` build for LAB_IPROUTE2=VERSION; None: the machine's (Debian's 6.1)."""
    version = os.environ.get("LAB_IPROUTE2", "")
    if not version:
        return None
    if version not in IPROUTE2_VERSIONS:
        raise LabError(
            f"LAB_IPROUTE2={version!r}: use one of {', '.join(IPROUTE2_VERSIONS)}, or leave it "
            "unset for this machine's ip"
        )
    default = LAB_DIR / "cache" / f"iproute2-{version}"
    path = Path(os.environ.get("LAB_IPROUTE2_DIR", default)).resolve()
    if not (path / "complete").exists():
        raise LabError(
            f"LAB_IPROUTE2={version}: no build in {path}; run `sh lab/build-iproute2.sh` first "
            "(about 30 s)"
        )
    return path

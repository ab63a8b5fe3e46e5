"""Builds the VM's initramfs from the installed Debian kernel and busybox-static.

Nothing binary is committed: the archive is assembled at `up` time from
/boot, /lib/modules and /bin/busybox, and cached by kernel version.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

BUSYBOX = Path("/bin/busybox")
# Only what it takes to mount the shared root; everything else is loaded by
# modprobe after switch_root, from the real /lib/modules seen over 9p.
EARLY_MODULES = ("virtio_pci", "virtio_net", "9pnet_virtio", "9p", "overlay")

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /ro /rw /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "initramfs: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /ro || {
    echo "initramfs: cannot mount the shared root"; exec sh; }
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot || {
    echo "initramfs: overlay mount failed"; exec sh; }
mkdir -p /newroot/.lab/ro /newroot/.lab/rw
mount --move /ro /newroot/.lab/ro
mount --move /rw /newroot/.lab/rw
init=$(sed -n 's/.*lab\.init=\([^ ]*\).*/\1/p' /proc/cmdline)
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh "$init"
"""


@dataclass(frozen=True)
class Kernel:
    version: str
    vmlinuz: Path
    modules: Path


def find_kernel() -> Kernel:
    """Picks the newest Debian kernel that ships vrf.ko (its version is not hard-coded)."""
    candidates = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        modules = Path("/lib/modules") / version
        if any((modules / "kernel/drivers/net").glob("vrf.ko*")):
            candidates.append(Kernel(version, vmlinuz, modules))
    if not candidates:
        raise LabError(
            "no kernel with vrf.ko under /boot and /lib/modules; run lab/install-deps.sh "
            "(it installs linux-image-amd64)"
        )
    return max(candidates, key=lambda k: _version_key(k.version))


def _version_key(version: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", version)]


def _module_deps(modules: Path) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    return deps


def _resolve(modules: Path, names: tuple[str, ...]) -> list[str]:
    deps = _module_deps(modules)
    by_name = {}
    for path in deps:
        base = os.path.basename(path).split(".ko")[0].replace("-", "_")
        by_name[base] = path
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        for dep in deps.get(path, []):
            visit(dep)
        ordered.append(path)

    for name in names:
        found = by_name.get(name)
        if found is None:
            # Built into this kernel, nothing to load.
            continue
        visit(found)
    return ordered


class _Cpio:
    """Minimal writer for the "newc" format the kernel unpacks."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(
            f"{v:08x}" for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        )
        self.ino += 1
        self.buf.write(header.encode() + encoded)
        self.buf.write(b"\0" * (-(110 + len(encoded)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build(kernel: Kernel, cache: Path) -> Path:
    """Returns the path of an initramfs for `kernel`, building it if the cache is stale."""
    if not BUSYBOX.exists():
        raise LabError("/bin/busybox is missing; run lab/install-deps.sh (busybox-static)")
    paths = _resolve(kernel.modules, EARLY_MODULES)
    digest = hashlib.sha256(INIT_SCRIPT.encode())
    digest.update(kernel.version.encode())
    for p in paths:
        digest.update(p.encode())
        digest.update(str((kernel.modules / p).stat().st_mtime_ns).encode())
    digest.update(str(BUSYBOX.stat().st_mtime_ns).encode())
    out = cache / f"initramfs-{kernel.version}-{digest.hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    cpio = _Cpio()
    for d in ("bin", "modules"):
        cpio.directory(d)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    names = []
    for p in paths:
        name = os.path.basename(p)
        data = (kernel.modules / p).read_bytes()
        if name.endswith(".xz") or name.endswith(".zst") or name.endswith(".gz"):
            raise LabError(f"compressed module {name} is not supported by the lab's initramfs")
        cpio.file(f"modules/{name}", data)
        names.append(name)
    cpio.file("modules.order", ("\n".join(names) + "\n").encode())
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(cpio.finish())
    tmp.rename(out)
    for old in cache.glob("initramfs-*.cpio"):
        if old != out:
            old.unlink()
    return out

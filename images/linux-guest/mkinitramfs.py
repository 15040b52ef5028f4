#!/usr/bin/env python3
"""The Linux guest's initramfs, as a newc cpio archive written here (no root, no cpio
tool: device nodes and ownership are just header fields).

It holds Debian's busybox-static as /bin/busybox (and /bin/sh), our /init, /dev/console
(without it the kernel runs init with no console, and nothing init prints is seen), and
the modules named by --load with every module they depend on, in load order, listed in
/etc/modules (the package ships no modules.dep: depmod makes it at install time, so the
dependencies are read from each module's own .modinfo `depends=`)."""

import argparse
import os
import stat
import sys


def entry(ino, name, mode, data=b"", rdev=(0, 0)):
    """One newc record: the 110-byte header (magic 070701 and 13 8-digit hex fields),
    the NUL-terminated name padded to 4 bytes, the data padded to 4 bytes."""
    name_b = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
    head = b"070701" + b"".join(b"%08x" % f for f in fields)
    out = head + name_b
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def modinfo_depends(path):
    """The `depends=` entry of a module's .modinfo section: names, comma-separated."""
    blob = open(path, "rb").read()
    at = blob.find(b"\0depends=")
    if at < 0:
        return []
    end = blob.index(b"\0", at + 1)
    value = blob[at + len(b"\0depends="):end].decode()
    return [d for d in value.split(",") if d]


def norm(name):
    return name.replace("-", "_")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--busybox", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--modules", required=True, help="the kernel's /lib/modules/RELEASE")
    ap.add_argument("--load", required=True, help="modules to load, comma-separated")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    index = {}
    for root, _, files in os.walk(args.modules):
        for f in files:
            if f.endswith(".ko"):
                index[norm(f[:-3])] = os.path.join(root, f)

    order = []

    def visit(name, chain):
        name = norm(name)
        if name in order:
            return
        if name in chain:
            sys.exit(f"mkinitramfs: module dependency cycle through {name}")
        if name not in index:
            sys.exit(f"mkinitramfs: no module {name} under {args.modules}")
        for dep in modinfo_depends(index[name]):
            visit(dep, chain + [name])
        order.append(name)

    for m in args.load.split(","):
        visit(m, [])

    records = []
    ino = 1

    def add(name, mode, data=b"", rdev=(0, 0)):
        nonlocal ino
        records.append(entry(ino, name, mode, data, rdev))
        ino += 1

    for d in ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "mnt"]:
        add(d, stat.S_IFDIR | 0o755)
    add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    add("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))
    add("bin/busybox", stat.S_IFREG | 0o755, open(args.busybox, "rb").read())
    add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    add("init", stat.S_IFREG | 0o755, open(args.init, "rb").read())
    for name in order:
        add(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, open(index[name], "rb").read())
    add("etc/modules", stat.S_IFREG | 0o644, "".join(f"/lib/modules/{n}.ko\n" for n in order).encode())
    records.append(entry(0, "TRAILER!!!", 0))
    with open(args.out, "wb") as f:
        f.write(b"".join(records))
    print(f"mkinitramfs: {args.out}: busybox, init, modules {' '.join(order)}")


if __name__ == "__main__":
    main()

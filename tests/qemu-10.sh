#!/usr/bin/env bash
# QEMU 10.0 beside Debian's 7.2, as a second referee: its SMMUv3 models more than 7.2's
# (SMMU_GBPA among others), and what passes on one emulator may lean on its leniency.
# Debian bookworm carries 7.2 (`qemu-system-aarch64`, the default everywhere); its
# backports suite carries 10.0. Installing 10.0 with apt would replace 7.2, so its
# packages are downloaded and unpacked into DIR (target/qemu-10), and DIR/qemu-system-aarch64
# runs it with its own data directory (-L) and its own modules (QEMU_MODULE_DIR: without
# it, 10.0 finds 7.2's modules in /usr/lib/x86_64-linux-gnu/qemu and aborts, "Only modules
# from the same build can be loaded"; hence the gui, opengl and spice module packages too,
# whose modules it loads at start-up).
#
# usage: qemu-10.sh DIR      (SUDO: the command to become root, empty when root)
# Says what it did, or why 10.0 is not installed; exits 0 either way (7.2 is what `make
# test` needs; 10.0 runs where it is installed).
set -euo pipefail
dir=${1:?usage: qemu-10.sh DIR}
sudo=${SUDO-}
wrapper=$dir/qemu-system-aarch64
if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
    exit 0
fi
skip() {
    echo "qemu-10: not installed: $1 (the QEMU tests run on $(qemu-system-aarch64 --version 2>/dev/null | head -n 1 || echo 'the default QEMU') only)"
    exit 0
}
. /etc/os-release 2>/dev/null || true
[ "${VERSION_CODENAME:-}" = bookworm ] || skip "not Debian bookworm (${PRETTY_NAME:-unknown system}), whose backports carry QEMU 10.0"
command -v apt-get >/dev/null || skip "no apt-get"
list=/etc/apt/sources.list.d/bookworm-backports.list
if ! apt-cache policy 2>/dev/null | grep -q 'bookworm-backports/main'; then
    echo "qemu-10: adding the bookworm-backports suite ($list)"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | $sudo tee "$list" >/dev/null
    $sudo apt-get update -qq || skip "apt-get update failed"
fi
pkgs="qemu-system-arm qemu-system-data qemu-system-common qemu-system-gui qemu-system-modules-opengl qemu-system-modules-spice"
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
chmod 777 "$debs" # apt-get download fetches as the _apt user where it can
echo "qemu-10: downloading $pkgs from bookworm-backports"
(cd "$debs" && apt-get download -qq -t bookworm-backports $pkgs 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
[ "$(ls "$debs"/*.deb 2>/dev/null | wc -l)" -eq 6 ] || skip "apt-get download -t bookworm-backports $pkgs failed"
rm -rf "$dir/root"
mkdir -p "$dir/root"
for d in "$debs"/*.deb; do dpkg -x "$d" "$dir/root"; done
root=$(cd "$dir/root" && pwd)
cat > "$wrapper" <<WRAPPER
#!/bin/sh
# QEMU 10.0 from bookworm-backports, unpacked by tests/qemu-10.sh: its own modules and data.
QEMU_MODULE_DIR=$root/usr/lib/x86_64-linux-gnu/qemu exec $root/usr/bin/qemu-system-aarch64 -L $root/usr/share/qemu "\$@"
WRAPPER
chmod +x "$wrapper"
"$wrapper" --version >/dev/null 2>&1 || skip "the unpacked QEMU does not run: $("$wrapper" --version 2>&1 | head -n 1)"
echo "qemu-10: $("$wrapper" --version | head -n 1) at $wrapper, beside $(qemu-system-aarch64 --version 2>/dev/null | head -n 1)"

#!/usr/bin/env bash
# What the Linux guest (images/linux-guest.xml) is made of, none of it committed: Debian's
# arm64 kernel and busybox-static (from Debian's archive, `dpkg --add-architecture arm64`
# and `apt-get download`), an initramfs of ours around them (mkinitramfs.py), and libvmm
# 0.2.0 with the sDDF it pins, from ../shared's tarballs. Everything lands in DIR
# (target/linux-guest); the Debian tools the build uses (clang, lld, llvm's binutils,
# dtc, cpio) are installed when missing. Idempotent: what is there is not fetched again.
#
# usage: deps.sh DIR SHARED      (SUDO: the command to become root, empty when root)
set -euo pipefail
dir=$1
shared=$2
sudo=${SUDO-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

need=()
for t in clang:clang ld.lld:lld llvm-ar:llvm llvm-objcopy:llvm dtc:device-tree-compiler cpio:cpio; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "linux-guest: installing ${need[*]} (libvmm builds with clang and lld; the guest's device tree with dtc)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

# libvmm and its sDDF, as the tarballs hold them.
for t in libvmm-0.2.0 sddf-a15355c7; do
    name=${t%%-*}
    if [ ! -f "$dir/$name/.extracted-$t" ]; then
        [ -f "$shared/$t.tar.gz" ] || { echo "linux-guest: $shared/$t.tar.gz is missing"; exit 1; }
        rm -rf "${dir:?}/$name"
        tar xzf "$shared/$t.tar.gz" -C "$dir"
        touch "$dir/$name/.extracted-$t"
        echo "linux-guest: $t extracted into $dir/$name"
    fi
done

# Debian's arm64 kernel: the package linux-image-arm64 stands for, and busybox-static.
if [ -f "$dir/Image" ] && [ -f "$dir/initramfs.cpio" ] && [ "$dir/initramfs.cpio" -nt "$here/init" ] &&
    [ "$dir/initramfs.cpio" -nt "$here/mkinitramfs.py" ]; then
    exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "linux-guest: dpkg --add-architecture arm64 (to download Debian's arm64 kernel and busybox)"
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq
fi
kpkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
    $sudo apt-get update -qq
    kpkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -n 1)
fi
[ -n "$kpkg" ] || { echo "linux-guest: apt-cache knows no linux-image-arm64:arm64"; exit 1; }
debs=$dir/debs
mkdir -p "$debs"
chmod 777 "$debs" # apt-get download fetches as the _apt user where it can
if ! ls "$debs/$kpkg"_*_arm64.deb >/dev/null 2>&1 || ! ls "$debs"/busybox-static_*_arm64.deb >/dev/null 2>&1; then
    echo "linux-guest: downloading $kpkg:arm64 (linux-image-arm64's kernel) and busybox-static:arm64 from Debian"
    rm -f "$debs"/*.deb
    (cd "$debs" && apt-get download -qq "$kpkg:arm64" busybox-static:arm64 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
fi
ls "$debs/$kpkg"_*_arm64.deb "$debs"/busybox-static_*_arm64.deb >/dev/null
rm -rf "$dir/kernel" "$dir/busybox"
dpkg-deb -x "$debs/$kpkg"_*_arm64.deb "$dir/kernel"
dpkg-deb -x "$debs"/busybox-static_*_arm64.deb "$dir/busybox"
# The package's vmlinuz is the uncompressed arm64 Image libvmm loads.
cp "$dir"/kernel/boot/vmlinuz-* "$dir/Image"
release=$(basename "$(ls -d "$dir"/kernel/lib/modules/*)")
python3 "$here/mkinitramfs.py" --busybox "$dir/busybox/bin/busybox" --init "$here/init" \
    --modules "$dir/kernel/lib/modules/$release" --load virtio_pci,virtio_blk,nvme \
    --out "$dir/initramfs.cpio.tmp"
mv "$dir/initramfs.cpio.tmp" "$dir/initramfs.cpio"
echo "$kpkg ($(dpkg-deb -f "$debs/$kpkg"_*_arm64.deb Version))" > "$dir/kernel-version"
echo "linux-guest: $(cat "$dir/kernel-version"): $dir/Image, and $dir/initramfs.cpio ($(stat -c %s "$dir/initramfs.cpio") bytes)"

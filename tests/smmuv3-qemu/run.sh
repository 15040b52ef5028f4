#!/usr/bin/env bash
# Boot the SMMUv3 test image on QEMU virt with its SMMUv3, edu devices and a virtio-blk
# disk, on four machines, and pass only if each does what it should:
#
#   missing GICv3   -machine gic-version=2: the image must say it found no GICv3, and fail;
#   missing SMMU    no iommu=smmuv3: the image must say it found no SMMUv3, and fail;
#   bridges         highmem=off (the ECAM below 4 GiB, 16 buses), edu A behind a PCIe
#                   root port (bus 1), edu B behind a conventional PCI bridge (its DMA
#                   carries the bridge's requester ID), edu C on bus 0, the disk behind a
#                   root port and a PCIe switch, and a device the tests do not use: every
#                   check must pass, and A's DMA must be translated and its faults name
#                   StreamID 0x100 (bus 1 in the requester ID);
#   default         three edu devices and the disk on bus 0 (narrated in full, last).
#
# Each boot's last line is `smmuv3-qemu: N passed, M failed`; the default one is this
# script's last line when everything passed.
#
# usage: run.sh IMAGE      (DEMO=1: the default machine only, with an introduction)
set -euo pipefail
image=${1:?usage: run.sh IMAGE}
qemu=${QEMU:-qemu-system-aarch64}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
disk=$dir/disk

# A 1 MiB disk whose first sector the virtio-blk test recognises.
head -c 1048576 /dev/zero > "$disk"
printf 'microkit-iommu test disk' | dd of="$disk" conv=notrunc status=none

# dma_mask: edu clamps bus addresses to 28 bits unless told otherwise; the tests use
# IOVAs and physical addresses above that. iommu_platform=on: without it QEMU's virtio
# devices reach memory directly, past the SMMU.
edu="edu,dma_mask=0xffffffffffff"
blk="virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on"
drive="file=$disk,if=none,format=raw,id=disk0"

failures=()
fail() {
    failures+=("$1")
    echo "run.sh: FAIL $1" >&2
}

# boot NAME SECONDS MACHINE [QEMU ARGS...]: boot the image, its console into $dir/NAME.log
# (and onto this script's output as it comes when SHOW is set).
boot() {
    local name=$1 seconds=$2 machine=$3
    shift 3
    local status
    set +e
    timeout "$seconds" "$qemu" \
        -machine "$machine" -cpu cortex-a57 -m 512M \
        -nographic -monitor none -serial stdio -no-reboot \
        -kernel "$image" "$@" 2>&1 | if [ -n "${SHOW:-}" ]; then tee "$dir/$name.log"; else cat > "$dir/$name.log"; fi
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -ne 0 ]; then
        fail "$name: QEMU exited with status $status (124 = timed out)"
    fi
}

# verdict NAME: the boot's last summary line.
verdict() {
    grep -a 'smmuv3-qemu: .* passed, .* failed' "$dir/$1.log" | tail -n 1 || true
}

# How many checks a boot on a machine the image runs on makes, every one of them passing:
# fewer means a test never ran (a device not found, a test returning early), which a
# verdict of "no failure" alone would not show. A new check in the image changes it.
CHECKS=80

# passed NAME: did the boot report all CHECKS passing and no failure?
passed() {
    local last
    last=$(verdict "$1")
    [[ "$last" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]] && [ "${BASH_REMATCH[2]}" -eq 0 ] && [ "${BASH_REMATCH[1]}" -eq "$CHECKS" ]
}

# says NAME TEXT...: the boot printed a line containing each TEXT (fixed strings).
says() {
    local name=$1 text
    shift
    for text in "$@"; do
        if ! grep -aqF -- "$text" "$dir/$name.log"; then
            fail "$name: the image did not say '$text'"
            return 1
        fi
    done
}

# What the image prints about a machine it cannot run on, and its verdict.
missing() {
    local name=$1 what=$2
    shift 2
    boot "$name" 20 "$@"
    local last
    last=$(verdict "$name")
    if says "$name" "smmuv3-qemu: device tree: $what"; then
        if [[ "$last" =~ passed,\ ([1-9][0-9]*)\ failed ]]; then
            echo "run.sh: $name: the image says: $(grep -aF "smmuv3-qemu: device tree: $what" "$dir/$name.log" | head -n 1 | sed 's/^smmuv3-qemu: device tree: //'); $last"
        else
            fail "$name: the image named what is missing but its verdict is '${last:-none}', not a failure"
        fi
    fi
}

if [ -z "${DEMO:-}" ]; then
    missing "missing GICv3" "no GICv3" virt,gic-version=2,iommu=smmuv3
    missing "missing SMMU" "no SMMUv3" virt,gic-version=3

    boot bridges "${TIMEOUT:-300}" virt,gic-version=3,iommu=smmuv3,highmem=off -nic none \
        -device pcie-root-port,id=rp0,chassis=1,addr=1 -device "$edu,bus=rp0" \
        -device pci-bridge,id=pb,chassis_nr=2,addr=2 -device "$edu,bus=pb,addr=3" \
        -device "$edu,addr=3" \
        -device pcie-root-port,id=rp1,chassis=3,addr=4 -device x3130-upstream,id=up,bus=rp1 \
        -device xio3130-downstream,id=dn,bus=up,chassis=4 \
        -drive "$drive" -device "$blk,bus=dn" \
        -device pci-testdev,addr=5
    if ! passed bridges; then
        cat "$dir/bridges.log"
        fail "bridges: the image did not report $CHECKS checks passing (last summary: '$(verdict bridges)')"
    elif says bridges \
        "PCIe ECAM at 0x3f000000 (+0x1000000: buses 00-0f)" \
        "00:01.0: buses 01-01, memory window" \
        "01:00.0 1234:11e8 edu: BAR0 at" "requester ID 0x100 -> StreamID 0x100" \
        "02:03.0 1234:11e8 edu: BAR0 at" "requester ID 0x10 (the ID of a PCI bridge above it) -> StreamID 0x10" \
        "00:04.0: buses 03-05" "05:00.0 1af4:1042 virtio-blk" \
        "00:05.0 1b36:0005 (class 00.ff): not a device these tests use: left disabled" \
        "device A (stream 0x100) reads 256 bytes from bus address 0x100000000" \
        "PASS mapped read" "PASS mapped write" "PASS unmapped write blocked" \
        "PASS translation fault reported: F_TRANSLATION, stream 0x100," \
        "PASS fault names stream B: F_TRANSLATION, stream 0x10," \
        "PASS virtio-blk: device live (FEATURES_OK and DRIVER_OK read back)" \
        "PASS virtio-blk: read through the service"; then
        echo "run.sh: bridges: edu A behind a root port is StreamID 0x100, translated, blocked where unmapped, its faults name 0x100; B behind a PCI bridge, C on bus 0 and the disk behind a switch pass too: $(verdict bridges)"
    fi
else
    cat <<'INTRO'
== microkit-iommu demo ==
QEMU virt with its SMMUv3, three edu DMA engines and a virtio-blk disk. First the SMMUv3
driver alone: each device tries to DMA where it may and where it may not, and each line
says what the device tried, what the SMMU did, and why. Then the IOMMU service core on top:
four driver clients make requests as they would over Microkit channels.
INTRO
fi

SHOW=1 boot default "${TIMEOUT:-300}" virt,gic-version=3,iommu=smmuv3 \
    -device "$edu" -device "$edu" -device "$edu" \
    -drive "$drive" -device "$blk"
if ! passed default; then
    fail "default: the image did not report $CHECKS checks passing (last summary: '$(verdict default)')"
fi

if [ "${#failures[@]}" -ne 0 ]; then
    echo "run.sh: ${#failures[@]} failure(s):" >&2
    printf 'run.sh:   %s\n' "${failures[@]}" >&2
    exit 1
fi

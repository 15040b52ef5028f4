#!/usr/bin/env bash
# Boot the SMMUv3 test image on QEMU virt with its SMMUv3 and three edu devices, and
# pass only if the image's last line reports at least one pass and no failure.
#
# usage: run.sh IMAGE      (DEMO=1 to print the whole narration without the summary check)
set -euo pipefail
image=${1:?usage: run.sh IMAGE}
qemu=${QEMU:-qemu-system-aarch64}
log=$(mktemp)
disk=$(mktemp)
trap 'rm -f "$log" "$disk"' EXIT

# A 1 MiB disk whose first sector the virtio-blk test recognises.
head -c 1048576 /dev/zero > "$disk"
printf 'microkit-iommu test disk' | dd of="$disk" conv=notrunc status=none

# dma_mask: edu clamps bus addresses to 28 bits unless told otherwise; the tests use
# IOVAs and physical addresses above that. iommu_platform=on: without it QEMU's virtio
# devices reach memory directly, past the SMMU.
edu="edu,dma_mask=0xffffffffffff"
if [ -n "${DEMO:-}" ]; then
    cat <<'INTRO'
== microkit-iommu demo ==
QEMU virt with its SMMUv3, three edu DMA engines and a virtio-blk disk. First the SMMUv3
driver alone: each device tries to DMA where it may and where it may not, and each line
says what the device tried, what the SMMU did, and why. Then the IOMMU service core on top:
four driver clients make requests as they would over Microkit channels.
INTRO
fi
set +e
timeout "${TIMEOUT:-300}" "$qemu" \
    -machine virt,gic-version=3,iommu=smmuv3 -cpu cortex-a57 -m 512M \
    -nographic -monitor none -serial stdio -no-reboot \
    -kernel "$image" \
    -device "$edu" -device "$edu" -device "$edu" \
    -drive "file=$disk,if=none,format=raw,id=disk0" \
    -device virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on \
    | tee "$log"
status=${PIPESTATUS[0]}
set -e

last=$(grep -a 'smmuv3-qemu: .* passed, .* failed' "$log" | tail -n 1 || true)
if [ "$status" -ne 0 ]; then
    echo "run.sh: QEMU exited with status $status (124 = timed out)" >&2
    exit 1
fi
if [[ "$last" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]}
    if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
        exit 0
    fi
fi
echo "run.sh: the image did not report success (last summary: '${last:-none}')" >&2
exit 1

#!/usr/bin/env bash
# images/linux-guest.xml's test: a fresh disk whose MiB at 1 MiB is random bytes (new on
# every run, so nothing but this run's DMA can produce them), the boot checked against
# EXPECT (check-boot.sh) with the lines that need those bytes' checksum added, and then,
# after QEMU has exited, the disk image itself: the guest's copy of the MiB at 2 MiB and
# its line at 3 MiB.
#
# usage: test.sh DISK EXPECT QEMU ARGS...
set -uo pipefail
disk=$1
expect=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
random=$(mktemp)
trap 'rm -f "$random"' EXIT

head -c $((8 << 20)) /dev/zero > "$disk"
head -c $((1 << 20)) /dev/urandom > "$random"
dd if="$random" of="$disk" bs=1M seek=1 conv=notrunc status=none
sum=$(sha256sum "$random" | cut -d' ' -f1)
echo "linux-guest: the disk's MiB at 1 MiB is random, sha256 $sum"
cat >> "$expect" <<LINES
the guest's Linux reads the test's random MiB from the disk by DMA, bytes right|^guest-init: read 1 MiB at 1 MiB of /dev/vda: sha256 $sum
and writes it back and reads it again, bytes right|^guest-init: wrote it back at 2 MiB and read it again: sha256 $sum
the restarted Linux reads, from the disk the VMM stopped, reset and resumed, the MiB the first boot wrote, bytes right|^guest-init: boot=again: read the MiB the first boot wrote at 2 MiB: sha256 $sum
the third Linux, after the VMM stopped the VM and its disk on an unhandled fault, reads the MiB the first boot wrote, bytes right|^guest-init: boot=third: read the MiB the first boot wrote at 2 MiB: sha256 $sum
after the disk's DMA outside its RAM, the guest runs on and its memory is as it was|^guest-init: after the disk's DMA outside its RAM: the guest runs on, its memory as it was \(sha256 $sum\)
LINES

TIMEOUT=${TIMEOUT:-150} "$here/../check-boot.sh" "$expect" "$@"
booted=$?

# The disk as QEMU left it.
passed=0 failed=0
check() {
    if [ "$2" = "$3" ]; then
        echo "  PASS $1"; passed=$((passed + 1))
    else
        echo "  FAIL $1"; failed=$((failed + 1))
    fi
}
check "the disk image holds, at 2 MiB, the random MiB the guest wrote back" \
    "$(dd if="$disk" bs=1M skip=2 count=1 status=none | sha256sum | cut -d' ' -f1)" "$sum"
check "and the guest's own line at 3 MiB" \
    "$(dd if="$disk" bs=1M skip=3 count=1 status=none | tr -d '\0')" "written by the Linux guest: sha256 $sum"
echo "linux-guest: the disk image after QEMU exited: $passed passed, $failed failed"
[ "$booted" -eq 0 ] && [ "$failed" -eq 0 ]

#!/usr/bin/env bash
# polled.py's derivation against the lines a polled boot may print: each check it relaxes
# for polling accepts the fault named with its region (the poll came first) and named with
# none (it came after the UNMAP that follows the fault), and still refuses the fault named
# with another region, or at another IOVA. Exit status 0 when it judges all of them so.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$here/polled.py" "$here/../system.xml" "$here/system.expect" "$out/polled.xml" "$out/polled.expect" || exit 1
failures=0

# usage: judge WHAT WANT LINE: WANT is "match" or "no match" for the derived check WHAT.
judge() {
    local what=$1 want=$2 line=$3 regex got
    regex=$(grep -F -m1 "$what" "$out/polled.expect" | cut -d'|' -f2-)
    if [ -z "$regex" ]; then
        echo "polled-test: FAIL no derived check begins \"$what\""
        failures=$((failures + 1))
        return
    fi
    if printf '%s\r\n' "$line" | grep -qE "$regex"; then got=match; else got="no match"; fi
    if [ "$got" = "$want" ]; then
        echo "polled-test: PASS $want: $line"
    else
        echo "polled-test: FAIL $what: $got (want $want): $line"
        failures=$((failures + 1))
    fi
}

drv="the blocked DMA is reported to the driver, found by a poll"
judge "$drv" match 'edu-driver: fault notified: stream 0x10 write at iova 0x100002000..=0x1000020fc (63 more), region 0 offset 0x1fff'
judge "$drv" match 'edu-driver: fault notified: stream 0x10 write at iova 0x100002000..=0x1000020fc (63 more), region 4294967295 offset 0x0'
judge "$drv" "no match" 'edu-driver: fault notified: stream 0x10 write at iova 0x100002000..=0x1000020fc (63 more), region 1 offset 0x0'
judge "$drv" "no match" 'edu-driver: fault notified: stream 0x10 write at iova 0x100002000..=0x1000020fc (63 more), region 0 offset 0x0'
pd="the IOMMU PD names the PD, device and IOVA of a fault it polled"
judge "$pd" match 'iommu: fault for edu_driver: device edu_a (stream 0x10) write at iova 0x100002000..=0x1000020fc, next to region edu_buffers (offset 0x1fff)'
judge "$pd" match 'iommu: fault for edu_driver: device edu_a (stream 0x10) write at iova 0x100002000..=0x1000020fc, in no region it was given'
judge "$pd" "no match" 'iommu: fault for edu_driver: device edu_a (stream 0x10) write at iova 0x100002000..=0x1000020fc, in region blk_pool at offset 0x0'
judge "$pd" "no match" 'iommu: fault for edu_driver: device edu_a (stream 0x10) write at iova 0x100002000..=0x1000020fc, next to region blk_pool (offset 0x1fff)'
[ "$failures" -eq 0 ]

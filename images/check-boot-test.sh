#!/usr/bin/env bash
# check-boot.sh against made-up consoles (no QEMU): a boot whose PDs never start does not
# pass "no PD faulted", a loader or kernel that gives up ends the run at once (not at the
# timeout) and fails it, a good boot passes, and a line that must not appear fails the
# boot only when it does, and a fault the image expects passes alone. Exit status 0 when it judges all of them so.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
expect=$(mktemp)
trap 'rm -f "$expect"' EXIT
failures=0

# usage: judge NAME WANT_STATUS MAX_SECONDS CONSOLE_SCRIPT
judge() {
    local name=$1 want=$2 max=$3 script=$4 start=$SECONDS out status
    out=$(TIMEOUT=20 bash "$here/check-boot.sh" "$expect" bash -c "$script")
    status=$?
    if [ "$status" -ne "$want" ] || [ $((SECONDS - start)) -gt "$max" ]; then
        echo "check-boot-test: FAIL $name: status $status (want $want) after $((SECONDS - start)) s (at most $max)"
        echo "$out" | sed 's/^/    /'
        failures=$((failures + 1))
    else
        echo "check-boot-test: PASS $name"
    fi
}

# With nothing else expected, "no PD faulted" alone must not pass a boot that never
# reached the PDs.
: > "$expect"
judge "no PD started: not passed" 1 15 'echo "LDR|INFO: loading"; sleep 1'
echo 'the driver ran|^drv: ran' > "$expect"
judge "the loader gave up: stopped at once" 1 5 'echo "LDR|ERROR: mismatch on loader data structure magic number"; sleep 30'
judge "the kernel halted: stopped at once" 1 5 'echo "MON|INFO: Microkit Monitor started!"; echo "halting..."; sleep 30'
judge "a good boot passes" 0 8 'printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\n"; sleep 30'
# What must not appear: absent passes, present fails.
printf 'the driver ran|^drv: ran\nno DMA ran|!^drv: DMA\n' > "$expect"
judge "a line that must not appear, absent" 0 8 'printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\n"; sleep 30'
judge "a line that must not appear, present" 1 8 'printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\ndrv: DMA done\r\n"; sleep 30'
# Lines of PDs of higher priority inside another's (WHOLE_LINES_FROM), one inside the
# other too: each judged whole once untangled; without the setting the cut line fails.
printf 'the driver read|^drv: read 4 bytes\r?$\nthe IOMMU PD told|^iommu: fault at 0x1000\r?$\nthe other driver was told|^other: told 0x1000\r?$\nand again|^iommu: fault at 0x2000\r?$\n' > "$expect"
tangled='printf "MON|INFO: Microkit Monitor started!\r\ndrv: reaiommu: fault at 0x1000\r\nother: toiommu: fault at 0x2000\r\nld 0x1000\r\nd 4 bytes\r\n"; sleep 30'
WHOLE_LINES_FROM='iommu: |other: |drv: ' judge "lines landed inside other lines, untangled" 0 8 "$tangled"
judge "lines landed inside other lines, not untangled" 1 5 "${tangled%; sleep 30}"
# A line cut and never finished is not taken for a whole line: its end is unknown (a
# value "0x0" cut before its next digit, say), so a check anchored at the end fails.
printf 'the driver held nothing|^drv: mappings 0x0\r?$\n' > "$expect"
WHOLE_LINES_FROM='iommu: |drv: ' judge "a line cut and never finished, untangled: not whole" 1 8 \
    'printf "MON|INFO: Microkit Monitor started!\r\ndrv: mappings 0x0iommu: tick\r\n"'
# A line that must not appear fails the boot wherever it landed: inside another PD's line
# too, whether or not the console is untangled (untangled, the IOMMU PD's line is cut
# again at "drv: ", a prefix it only mentions, and neither piece matches from its start).
printf 'the driver ran|^drv: ran\r?$\nnever quarantined|!^iommu: fault for drv: .*device quarantined\n' > "$expect"
inside='printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\nother: toiommu: fault for drv: write; device quarantined\r\nld\r\n"; sleep 30'
judge "a line that must not appear, inside another's, not untangled" 1 8 "$inside"
WHOLE_LINES_FROM='iommu: |drv: |other: ' judge "a line that must not appear, inside another's, untangled" 1 8 "$inside"
# A line that must not appear whose regex grep cannot read fails the boot: it could never
# match, so it would pass whatever the console said.
printf 'the driver ran|^drv: ran\r?$\nnever quarantined|!^iommu: (quarantined\n' > "$expect"
judge "a line that must not appear, its regex unreadable" 1 8 'printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\n"; sleep 30'
# A check with no regex (its line lacks the `|`, or ends there) fails: an empty regex
# matches every console, so it could never fail.
printf 'the driver ran|^drv: ran\r?$\nthe driver mapped its buffer\nthe device wrote|\n' > "$expect"
judge "a check without a regex" 1 8 'printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\n"; sleep 30'
# A fault the image expects (FAULTING_PD): that PD's alone passes; another PD's fault
# beside it, or none at all, fails.
echo 'the driver ran|^drv: ran' > "$expect"
faulted='printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\nMON|ERROR: faulting PD: iommu\r\n"'
FAULTING_PD=iommu judge "the expected PD faulted alone" 0 8 "$faulted; sleep 30"
FAULTING_PD=iommu judge "the expected PD did not fault" 1 8 'printf "MON|INFO: Microkit Monitor started!\r\ndrv: ran\r\n"; sleep 30'
FAULTING_PD=iommu judge "another PD faulted beside it" 1 8 "$faulted"'; printf "MON|ERROR: faulting PD: drv\r\n"; sleep 30'
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# Boot the Microkit image headless and check what the PDs printed against EXPECT (lines
# "what it shows|regex"). QEMU runs until every expected line has appeared (and a moment
# more, so a late fault is seen), until the loader or the kernel gives up (nothing more
# will come), or for TIMEOUT seconds, whichever is first. The last line is
# `microkit-image: N passed, M failed`; the exit status says the same.
#
# "No PD faulted" says something only if the PDs ran: it passes only once Microkit's
# monitor has started them. A line whose regex starts with `!` says what must NOT appear
# (checked once QEMU has stopped).
#
# WHOLE_LINES_FROM (optional): the line prefixes of the PDs, as an extended regex
# ('iommu: |hostile: |...'). On one core a PD's line can be cut by the lines of a PD of
# higher priority (seL4's debug console takes a character at a time):
# `blk-driver: pool at iova iommu: fault ...`, `hostile: told ...`, then `0x100000000`.
# Each line that begins inside another is taken out, and the cut line is joined again
# with the next line that begins no PD's line (the cut PD goes on once the higher ones are
# done), before anything is judged. A cut line whose rest never came is kept, marked
# `[cut short]`: its end is unknown, so it is not taken for a whole line.
#
# A `!` line is looked for anywhere in a line, its leading `^` dropped, in the console as
# printed and as untangled: a line that must not appear can land inside another PD's
# line, and the untangler can cut one at a prefix it merely mentions. A `!` line whose
# regex grep cannot read fails: it could match nothing, so it would pass whatever came.
#
# FAULTING_PD (optional): the one PD whose fault the image expects (iommu-panic's IOMMU
# PD, which panics on purpose): then "no PD faulted" becomes "only FAULTING_PD faulted",
# which needs it to have faulted and no other PD to have.
#
# A line with no regex (no `|`, or nothing after it) fails: it could never fail otherwise.
#
# usage: check-boot.sh EXPECT QEMU ARGS...
set -uo pipefail
expect_file=$1
shift
raw=$(mktemp)
log=$(mktemp)
trap 'rm -f "$raw" "$log"' EXIT

# The console as the PDs meant it: $raw with WHOLE_LINES_FROM's lines untangled.
untangle() {
    if [ -z "${WHOLE_LINES_FROM:-}" ]; then
        cp "$raw" "$log"
        return
    fi
    awk -v re="$WHOLE_LINES_FROM" '
        BEGIN { starts = "^(" re "|MON[|]|LDR[|]|<<seL4)" }
        {
            line = $0
            if (cut > 0 && line !~ starts) line = pending[cut--] line
            while (match(substr(line, 2), re)) {
                pending[++cut] = substr(line, 1, RSTART)
                line = substr(line, RSTART + 1)
            }
            print line
        }
        END { while (cut > 0) print pending[cut--] " [cut short]" }
    ' "$raw" > "$log"
}

# What the Microkit loader and seL4 print when they stop for good.
fatal='LDR\|ERROR|halting\.\.\.|seL4 failed assertion|KERNEL (PREFETCH|DATA) ABORT'
started='MON\|INFO: Microkit Monitor started'

all_seen() {
    local name regex
    untangle
    while IFS='|' read -r name regex; do
        [ -z "$name" ] && continue
        [ "${regex#!}" != "$regex" ] && continue
        grep -qE "$regex" "$log" || return 1
    done < "$expect_file"
}

"$@" < /dev/null > "$raw" 2>&1 &
qemu=$!
deadline=$((SECONDS + ${TIMEOUT:-60}))
while kill -0 "$qemu" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    if all_seen; then
        sleep 2
        break
    fi
    if grep -qE "$fatal" "$raw"; then
        # Let the rest of the message reach the log.
        sleep 0.5
        break
    fi
    sleep 0.5
done
kill "$qemu" 2>/dev/null
wait "$qemu" 2>/dev/null
cat "$raw"
untangle
passed=0 failed=0
while IFS='|' read -r name regex; do
    [ -z "$name" ] && continue
    if [ -z "${regex#!}" ]; then
        # An empty regex matches every console (and, after `!`, none): it cannot fail.
        echo "  FAIL $name (no regex: the line must be \"what it shows|regex\")"; failed=$((failed + 1))
    elif [ "${regex#!}" != "$regex" ]; then
        anywhere=${regex#!}
        anywhere=${anywhere#^}
        grep -qE "$anywhere" "$log" "$raw"
        case $? in
            0) echo "  FAIL $name (a line matches: ${regex#!}, anywhere in the line)"; failed=$((failed + 1)) ;;
            1) echo "  PASS $name"; passed=$((passed + 1)) ;;
            # grep could not read the regex: it would never match, whatever appeared.
            *) echo "  FAIL $name (grep cannot read the regex: ${regex#!})"; failed=$((failed + 1)) ;;
        esac
    elif grep -qE "$regex" "$log"; then
        echo "  PASS $name"; passed=$((passed + 1))
    else
        echo "  FAIL $name (no line matching: $regex)"; failed=$((failed + 1))
    fi
done < "$expect_file"
if grep -qE "$fatal" "$log"; then
    echo "  FAIL the loader or the kernel stopped: $(grep -m1 -E "$fatal" "$log" | tr -d '\r')"; failed=$((failed + 1))
fi
if ! grep -qE "$started" "$log"; then
    echo "  FAIL no PD faulted: the PDs never started (no \"MON|INFO: Microkit Monitor started\")"; failed=$((failed + 1))
elif [ -n "${FAULTING_PD:-}" ]; then
    faulting=$(grep -o "MON|ERROR: faulting PD: [^ ]*" "$log" | sed 's/.*: //' | tr -d '\r' | sort -u | tr '\n' ' ')
    if [ "$faulting" = "$FAULTING_PD " ]; then
        echo "  PASS only $FAULTING_PD faulted, as expected"; passed=$((passed + 1))
    else
        echo "  FAIL only $FAULTING_PD was to fault; faulted: ${faulting:-none}"; failed=$((failed + 1))
    fi
elif grep -q "MON|ERROR" "$log"; then
    echo "  FAIL a PD faulted"; failed=$((failed + 1))
else
    echo "  PASS no PD faulted"; passed=$((passed + 1))
fi
echo "microkit-image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

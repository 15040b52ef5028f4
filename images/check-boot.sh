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
# usage: check-boot.sh EXPECT QEMU ARGS...
set -uo pipefail
expect_file=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# What the Microkit loader and seL4 print when they stop for good.
fatal='LDR\|ERROR|halting\.\.\.|seL4 failed assertion|KERNEL (PREFETCH|DATA) ABORT'
started='MON\|INFO: Microkit Monitor started'

all_seen() {
    local name regex
    while IFS='|' read -r name regex; do
        [ -z "$name" ] && continue
        [ "${regex#!}" != "$regex" ] && continue
        grep -qE "$regex" "$log" || return 1
    done < "$expect_file"
}

"$@" < /dev/null > "$log" 2>&1 &
qemu=$!
deadline=$((SECONDS + ${TIMEOUT:-60}))
while kill -0 "$qemu" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    if all_seen; then
        sleep 2
        break
    fi
    if grep -qE "$fatal" "$log"; then
        # Let the rest of the message reach the log.
        sleep 0.5
        break
    fi
    sleep 0.5
done
kill "$qemu" 2>/dev/null
wait "$qemu" 2>/dev/null
cat "$log"
passed=0 failed=0
while IFS='|' read -r name regex; do
    [ -z "$name" ] && continue
    if [ "${regex#!}" != "$regex" ]; then
        if grep -qE "${regex#!}" "$log"; then
            echo "  FAIL $name (a line matches: ${regex#!})"; failed=$((failed + 1))
        else
            echo "  PASS $name"; passed=$((passed + 1))
        fi
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
elif grep -q "MON|ERROR" "$log"; then
    echo "  FAIL a PD faulted"; failed=$((failed + 1))
else
    echo "  PASS no PD faulted"; passed=$((passed + 1))
fi
echo "microkit-image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

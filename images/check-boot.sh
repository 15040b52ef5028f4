#!/usr/bin/env bash
# Boot the Microkit image headless for a bounded time and check what the PDs printed.
# The last line is `microkit-image: N passed, M failed`; the exit status says the same.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
timeout "${TIMEOUT:-20}" "$@" < /dev/null > "$log" 2>&1
cat "$log"
passed=0 failed=0
expect() {
    if grep -qE "$2" "$log"; then
        echo "  PASS $1"; passed=$((passed + 1))
    else
        echo "  FAIL $1 (no line matching: $2)"; failed=$((failed + 1))
    fi
}
expect "seL4 and Microkit booted" "MON\\|INFO: Microkit Monitor started"
expect "the IOMMU PD brought the SMMUv3 up" "^iommu: SMMUv3\\.[0-9]+ up: 16-bit StreamIDs"
expect "every stream aborts before any driver runs" "^iommu: stream 0x10: Abort"
if grep -q "MON|ERROR" "$log"; then echo "  FAIL no PD faulted"; failed=$((failed + 1)); else echo "  PASS no PD faulted"; passed=$((passed + 1)); fi
echo "microkit-image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# What iommu-sdf accepts, the SDK's own Microkit tool must accept as build wrote it: every
# valid description of the repository (iommu-sdf's fixtures, and a few generated at
# random as the property tests make them) is checked, built, and handed to the Microkit
# tool with stub program images (stub-images.py) that define every symbol it patches.
# A description that build writes and the Microkit tool refuses means build's plumbing or
# escaping broke something iommu-sdf promised.
#
# usage: accepted-descriptions.sh MICROKIT_SDK BOARD CONFIG
set -uo pipefail
sdk=$1 board=$2 config=$3
top=$(cd "$(dirname "$0")/.." && pwd)
tool=$top/target/debug/iommu-sdf
(cd "$top" && cargo build -q -p iommu-sdf --bins --examples) || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sdf=$top/tools/iommu-sdf/tests/sdf
files=("$sdf"/ok.xml "$sdf"/ok-children.xml "$sdf"/ok-vm.xml "$sdf"/ok-queue.xml "$sdf"/ok-queue-bare.xml "$sdf"/plain-microkit.xml "$sdf"/plain-prefill.xml)
# Random valid descriptions, as tests/properties.rs generates them.
for seed in 1 2 3 4 5 6 7 8; do
    "$top/target/debug/examples/generate" "$seed" > "$work/generated-$seed.xml" || exit 1
    files+=("$work/generated-$seed.xml")
done
pass=0 fail=0
for f in "${files[@]}"; do
    name=$(basename "$f" .xml)
    out=$work/$name
    # build checks it (every rule but the programs', which build runs before) and writes it.
    "$tool" build "$f" --board "$board" --config "$config" --out "$out" >/dev/null || { echo "  FAIL $name: build"; fail=$((fail + 1)); continue; }
    python3 "$top/images/stub-images.py" "$out/$name.system" "$out/elf" || { echo "  FAIL $name: stub images"; fail=$((fail + 1)); continue; }
    # Then check, with the programs read, as the images' builds check them before the
    # Microkit tool (without them check refuses: the programs' placement is unproven).
    if ! "$tool" check "$f" --board "$board" --config "$config" --search-path "$out/elf" >/dev/null 2>&1; then
        echo "  FAIL $name: iommu-sdf check refuses it with its programs"; fail=$((fail + 1)); continue
    fi
    if msg=$("$sdk/bin/microkit" "$out/$name.system" --board "$board" --config "$config" \
        --search-path "$out/elf" -o "$out/loader.img" -r "$out/report.txt" 2>&1); then
        echo "  PASS $name: the Microkit tool accepts build's output"; pass=$((pass + 1))
    else
        echo "  FAIL $name: the Microkit tool refuses build's output:"; echo "$msg" | head -3 | sed 's/^/      /'
        fail=$((fail + 1))
    fi
done
echo "accepted-descriptions: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]

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
source "$top/images/built-by-both.sh"
pass=0 fail=0
for f in "${files[@]}"; do
    name=$(basename "$f" .xml)
    out=$work/$name
    built_by_both "$name" "$f" "$out"
    case $? in
        0) echo "  PASS $name: the Microkit tool accepts build's output"; pass=$((pass + 1)) ;;
        2) echo "  FAIL $name: build"; fail=$((fail + 1)) ;;
        *) fail=$((fail + 1)) ;;
    esac
done
echo "accepted-descriptions: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]

#!/usr/bin/env bash
# iommu-sdf's DMA reach report against the SDK's own Microkit tool, on descriptions
# generated to be hostile where the report's arithmetic meets the Microkit tool's
# placement (`generate --hostile SEED`, iommu_sdf::gen::hostile: a DMA region's
# phys_addr dropped, moved into RAM or against another region, 2 MiB pages, capabilities
# at an offset). Each one `build` accepts is built with stub programs, checked with them
# as the images' builds check, and given to the Microkit tool with --capdl-json; then
# reach-agrees.py holds every row of `iommu-sdf report` against where the Microkit tool
# placed each frame and every other kernel object. Whatever iommu-sdf accepts and the
# Microkit tool refuses, or places otherwise than the report says, fails.
#
# usage: reach-differential.sh MICROKIT_SDK BOARD CONFIG FIRST_SEED LAST_SEED
set -uo pipefail
sdk=$1 board=$2 config=$3 first=$4 last=$5
top=$(cd "$(dirname "$0")/.." && pwd)
tool=$top/target/debug/iommu-sdf
(cd "$top" && cargo build -q -p iommu-sdf --bins --examples) || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
agree=0 refused=0 fail=0 rows=0
for seed in $(seq "$first" "$last"); do
    name=hostile-$seed
    f=$work/$name.xml out=$work/$name
    "$top/target/debug/examples/generate" --hostile "$seed" > "$f" || exit 1
    # Refused by iommu-sdf: nothing to hold the Microkit tool to.
    if ! "$tool" build "$f" --board "$board" --config "$config" --out "$out" >/dev/null 2>&1; then
        refused=$((refused + 1)); continue
    fi
    python3 "$top/images/stub-images.py" "$out/$name.system" "$out/elf" || { echo "  FAIL $name: stub images"; fail=$((fail + 1)); continue; }
    if ! "$tool" check "$f" --board "$board" --config "$config" --search-path "$out/elf" >/dev/null 2>&1; then
        echo "  FAIL $name: build accepts it and check with its programs refuses it"; fail=$((fail + 1)); continue
    fi
    if ! msg=$("$sdk/bin/microkit" "$out/$name.system" --board "$board" --config "$config" --search-path "$out/elf" \
        -o "$out/loader.img" -r "$out/microkit-report.txt" --capdl-json "$out/capdl.json" 2>&1); then
        echo "  FAIL $name: iommu-sdf accepts it, the Microkit tool refuses build's output:"; echo "$msg" | head -3 | sed 's/^/      /'
        fail=$((fail + 1)); continue
    fi
    "$tool" report "$f" --board "$board" --config "$config" > "$out/report.md" 2>/dev/null || { echo "  FAIL $name: report"; fail=$((fail + 1)); continue; }
    if said=$(python3 "$top/images/reach-agrees.py" "$out/report.md" "$out/microkit-report.txt" "$out/capdl.json"); then
        agree=$((agree + 1))
        rows=$((rows + $(echo "$said" | sed -n 's/^reach-agrees: \([0-9]*\) row.*/\1/p')))
    else
        echo "  FAIL $name ($("$top/target/debug/examples/generate" --hostile "$seed" >/dev/null; echo "generate --hostile $seed")):"; echo "$said" | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
echo "reach-differential: seeds $first..$last: $agree accepted by both and agreeing ($rows reach rows), $refused refused by iommu-sdf, $fail failed"
# A run where iommu-sdf refused everything proved nothing.
[ "$fail" -eq 0 ] && [ "$agree" -gt 0 ]

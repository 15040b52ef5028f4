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
source "$top/images/built-by-both.sh"
agree=0 refused=0 fail=0 rows=0
for seed in $(seq "$first" "$last"); do
    name=hostile-$seed
    f=$work/$name.xml out=$work/$name
    "$top/target/debug/examples/generate" --hostile "$seed" > "$f" || exit 1
    built_by_both "$name" "$f" "$out" --capdl-json "$out/capdl.json"
    case $? in
        0) ;;
        # Refused by iommu-sdf: nothing to hold the Microkit tool to.
        2) refused=$((refused + 1)); continue ;;
        *) fail=$((fail + 1)); continue ;;
    esac
    "$tool" report "$f" --board "$board" --config "$config" > "$out/report.md" 2>/dev/null || { echo "  FAIL $name: report"; fail=$((fail + 1)); continue; }
    if said=$(python3 "$top/images/reach-agrees.py" "$out/report.md" "$out/microkit-report.txt" "$out/capdl.json"); then
        agree=$((agree + 1))
        rows=$((rows + $(echo "$said" | sed -n 's/^reach-agrees: \([0-9]*\) row.*/\1/p')))
    else
        echo "  FAIL $name (generate --hostile $seed):"; echo "$said" | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
echo "reach-differential: seeds $first..$last: $agree accepted by both and agreeing ($rows reach rows), $refused refused by iommu-sdf, $fail failed"
# A run where iommu-sdf refused everything proved nothing.
[ "$fail" -eq 0 ] && [ "$agree" -gt 0 ]

# Sourced by accepted-descriptions.sh and reach-differential.sh: `built_by_both NAME FILE
# OUT [MICROKIT ARGS...]` checks FILE with iommu-sdf's build (every rule but the programs',
# which build runs before), writes OUT/NAME.system and stub programs for it (stub-images.py:
# every symbol the Microkit tool patches), checks FILE again with those programs read, as
# the images' builds do, and hands build's output to the SDK's Microkit tool with any
# further arguments. Needs $tool, $top, $sdk, $board, $config. Returns 0 when both tools
# accept it, 2 when build refuses it, and 1 (having said why) when iommu-sdf accepts what
# the Microkit tool refuses, or a step fails.
built_by_both() {
    local name=$1 f=$2 out=$3 msg
    shift 3
    "$tool" build "$f" --board "$board" --config "$config" --out "$out" >/dev/null 2>&1 || return 2
    python3 "$top/images/stub-images.py" "$out/$name.system" "$out/elf" || { echo "  FAIL $name: stub images"; return 1; }
    if ! "$tool" check "$f" --board "$board" --config "$config" --search-path "$out/elf" >/dev/null 2>&1; then
        echo "  FAIL $name: iommu-sdf check refuses it with its programs"; return 1
    fi
    if ! msg=$("$sdk/bin/microkit" "$out/$name.system" --board "$board" --config "$config" \
        --search-path "$out/elf" -o "$out/loader.img" -r "$out/microkit-report.txt" "$@" 2>&1); then
        echo "  FAIL $name: the Microkit tool refuses build's output:"; echo "$msg" | head -3 | sed 's/^/      /'
        return 1
    fi
}

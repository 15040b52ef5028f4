#!/usr/bin/env bash
# iommu-sdf and the SDK's own Microkit tool on the corpus of Microkit rules
# (tools/iommu-sdf/tests/sdf/microkit/: descriptions of ours, each valid or breaking one
# rule, `<!-- expect: ok|refused -->`, the line at fault marked `<!-- HERE -->`). They must
# agree: a valid one passes `iommu-sdf check`, builds, and the Microkit tool takes the
# build's output; a refused one is refused by iommu-sdf at the marked line, or passes it
# and is refused by the Microkit tool reading the build's output, at the marked line
# (`build` keeps the text line for line, so the tool's line is the user's), shown against
# the user's file by microkit-tool.sh, as `make run` shows it. And whoever refused it, the
# SDK's tool is also run on the description itself (the corpus is plain Microkit) and
# must refuse it too (an error, or a panic or an abort, which is how it refuses some programs), unless
# the file says `<!-- microkit: ok -->`: a rule iommu-sdf holds that the Microkit tool
# does not (a program built for another processor). `<!-- by: iommu-sdf -->` says the
# refusal must be iommu-sdf's own, at the marked line (the programs' rules: leaving them to
# the Microkit tool, which names no line or panics, was the gap they close).
#
# The programs: c-edu-driver.elf, and spoilt copies of it (bad-programs.py: the ELFs the
# Microkit tool's loading refuses or cannot patch), which the program-*.xml descriptions
# name.
#
# usage: microkit-rules.sh MICROKIT_SDK BOARD CONFIG SEARCH_PATH  (SEARCH_PATH holds
# c-edu-driver.elf, the program every corpus PD names)
set -uo pipefail
sdk=$1 board=$2 config=$3 search=$4
top=$(cd "$(dirname "$0")/.." && pwd)
corpus=$top/tools/iommu-sdf/tests/sdf/microkit
tool=$top/target/debug/iommu-sdf
(cd "$top" && cargo build -q -p iommu-sdf) || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$top/images/bad-programs.py" "$search/c-edu-driver.elf" "$work/programs" || exit 1
agree=0 disagree=0
for f in "$corpus"/*.xml; do
    name=$(basename "$f" .xml)
    expect=$(sed -n 's/.*<!-- expect: \([a-z]*\) -->.*/\1/p' "$f" | head -1)
    here=$(grep -n '<!-- HERE -->' "$f" | cut -d: -f1)
    microkit_expect=$(sed -n 's/.*<!-- microkit: \([a-z]*\) -->.*/\1/p' "$f" | head -1)
    microkit_expect=${microkit_expect:-$expect}
    by_expect=$(sed -n 's/.*<!-- by: \([a-z-]*\) -->.*/\1/p' "$f" | head -1)
    # The SDK's tool on the description as written.
    "$sdk/bin/microkit" "$f" --board "$board" --config "$config" --search-path "$search" --search-path "$work/programs" \
        -o "$work/direct.img" -r "$work/direct.txt" >"$work/direct.out" 2>&1
    rc=$?
    case $rc in
        0) microkit=ok ;;
        1) microkit=refused ;;
        101) microkit=refused; how=" (it panicked: $(grep -m1 -o "panicked at [^ ]*" "$work/direct.out"))" ;;
        # Aborted (SIGABRT): it could not allocate an image that large on the host.
        134) microkit=refused; how=" (it aborted: $(grep -m1 -o "memory allocation of [0-9]* bytes failed" "$work/direct.out"))" ;;
        *) microkit="crashed ($rc)" ;;
    esac
    verdict="" where=""
    # With the programs, as the Microkit tool reads them (a map over one is refused here).
    if ! ours=$("$tool" check "$f" --board "$board" --config "$config" --search-path "$search" --search-path "$work/programs" 2>&1); then
        verdict=refused
        where=$(echo "$ours" | sed -n 's/^[^:]*:\([0-9]*\):[0-9]*: error: .*/\1/p' | head -1)
        by=iommu-sdf
    else
        "$tool" build "$f" --board "$board" --config "$config" --out "$work/$name" >/dev/null 2>&1 || { verdict=build-failed; }
        if [ -z "$verdict" ]; then
            # Through microkit-tool.sh, as images/Makefile runs it: a place the tool names
            # must be shown in the user's file ($f), at the marked line.
            out=$("$top/images/microkit-tool.sh" "$f" "$work/$name/$name.system" "$sdk/bin/microkit" --board "$board" --config "$config" \
                --search-path "$search" --search-path "$work/programs" -o "$work/$name/loader.img" -r "$work/$name/report.txt" 2>&1)
            rc=$?
            by=microkit
            case $rc in
                0) verdict=ok ;;
                1) verdict=refused; where=$(echo "$out" | grep -F "$f:" | sed -n "s/.*$name\.xml:\([0-9]*\):[0-9]*.*/\1/p" | head -1)
                   # A refusal that names a place must name it in the user's file.
                   if echo "$out" | grep -qF "$name.system:" && ! echo "$out" | grep -qF "$f:"; then where=not-in-the-users-file; fi ;;
                *) verdict="crashed ($rc)" ;;
            esac
        fi
    fi
    said="the SDK's tool on it: $microkit${how:-}"
    if [ "$verdict" = "$expect" ] && { [ "$expect" = ok ] || [ -z "$where" ] || [ "$where" = "$here" ]; } \
        && [ "$microkit" = "$microkit_expect" ] && { [ -z "$by_expect" ] || [ "$by" = "$by_expect" ]; }; then
        agree=$((agree + 1))
        echo "  agree $name: $verdict${where:+ at line $where} (by $by); $said"
    else
        disagree=$((disagree + 1))
        echo "  DISAGREE $name: expected $expect${here:+ at line $here}${by_expect:+ by $by_expect} and $microkit_expect from the SDK's tool, got $verdict${where:+ at line $where} (by $by); $said"
        [ -n "${out:-}" ] && echo "$out" | head -3 | sed 's/^/      /'
        [ "$microkit" != "$microkit_expect" ] && head -3 "$work/direct.out" | sed 's/^/      /'
    fi
    out="" how=""
done
echo "microkit-rules: $agree agree, $disagree disagree"
[ "$disagree" -eq 0 ]

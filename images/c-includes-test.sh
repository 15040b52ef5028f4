#!/usr/bin/env bash
# Every C PD that includes a file of another PD's folder (`#include "../<pd>/<file>"`: the
# IOMMU PD's panic tests are c-smmu-failure's test built with another define) has that file
# among its ELF's prerequisites in images/Makefile, so a change to it rebuilds the PD:
# otherwise an image boots the old test and its checks judge a program nobody wrote.
# Read from make's database (`make -pq`), nothing built. Exit status 0 when every such
# include is a prerequisite.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
db=$(make -C "$here" -pq __no_such_target__ 2>/dev/null)
build=$(printf '%s\n' "$db" | sed -n 's/^BUILD := //p' | head -n 1)
if [ -z "$build" ]; then
    echo "c-includes-test: FAIL make's database names no BUILD"
    exit 1
fi
failures=0 checked=0
for main in "$top"/pds/*/main.c; do
    pd=$(basename "$(dirname "$main")")
    while read -r included; do
        file=$(cd "$(dirname "$main")" && realpath -m "$included")
        checked=$((checked + 1))
        prerequisites=$(printf '%s\n' "$db" | grep -E "^$build/$pd\.elf:" | cut -d: -f2-)
        if printf '%s\n' $prerequisites | grep -qxF "$file"; then
            echo "c-includes-test: PASS $pd.elf is rebuilt when ${file#"$top"/} changes"
        else
            echo "c-includes-test: FAIL $pd.elf includes ${file#"$top"/} but does not depend on it"
            failures=$((failures + 1))
        fi
    done < <(sed -n 's/^#include "\(\.\.\/[^"]*\)".*/\1/p' "$main")
done
if [ "$checked" -eq 0 ]; then
    echo "c-includes-test: FAIL no C PD includes another's file: nothing was checked"
    exit 1
fi
[ "$failures" -eq 0 ]

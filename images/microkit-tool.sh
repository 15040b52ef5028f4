#!/usr/bin/env bash
# The Microkit tool on what `iommu-sdf build` wrote, its messages shown against the user's
# description: build writes SYSTEM line for line from SOURCE, so a place the tool names
# in SYSTEM (`SYSTEM:LINE:COL`) is the same place in SOURCE, and the user is shown SOURCE.
# Output and exit status are the tool's, with that path rewritten.
#
# usage: microkit-tool.sh SOURCE SYSTEM MICROKIT [ARGS...]  (MICROKIT runs as `MICROKIT SYSTEM ARGS...`)
set -uo pipefail
source=$1 system=$2 tool=$3
shift 3
out=$("$tool" "$system" "$@" 2>&1)
status=$?
# Paths as sed patterns: every character that is not a letter or digit escaped.
escape() { printf '%s' "$1" | sed 's/[^A-Za-z0-9]/\\&/g'; }
replacement=$(printf '%s' "$source" | sed 's/[\\&|]/\\&/g')
[ -n "$out" ] && printf '%s\n' "$out" | sed "s|$(escape "$system"):|$replacement:|g"
if [ "$status" -ne 0 ] && printf '%s' "$out" | grep -qF "$system:"; then
    echo "(the Microkit tool read $system, which iommu-sdf build wrote line for line from $source: the place above is in $source)"
fi
exit "$status"

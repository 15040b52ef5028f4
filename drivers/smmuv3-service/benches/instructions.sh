#!/bin/bash
# Instructions per request on the paths of `service_vs_driver` (benches/common/paths.rs,
# run by examples/instructions.rs),
# counted by callgrind: what the machine's load does not move. Needs valgrind
# (Debian: `apt-get install valgrind`). Prints each path's count and the two ratios of
# issue 26 (call MAP / driver map, queue MAP+UNMAP / driver map+unmap).
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -q -p smmuv3-service --example instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for path in driver map queue; do
	valgrind --tool=callgrind --callgrind-out-file="$out/$path" target/release/examples/instructions "$path" >/dev/null 2>&1
done
# A path function's inclusive count (every call of it): callgrind_annotate lists a
# function once per source file its lines come from, the whole of it as the largest.
count() {
	callgrind_annotate --inclusive=yes "$out/$1" | grep -E "^ *[0-9,]+ .*paths::$2( \[.*)?$" |
		awk '{gsub(",", "", $1); if ($1 + 0 > max + 0) max = $1} END {print max}'
}
# Requests each path function served in all its calls (the example's rounds, warm-up
# included): 4,160 (65 x 64) for the driver's and the MAP call's, 4,112 (514 batches of 8)
# for the queue's.
python3 - "$(count driver driver_map_unmap)" "$(count driver driver_map)" \
	"$(count map service_map)" "$(count queue queue)" <<'PY'
import sys
dmu, dm, sm, q = (int(x) for x in sys.argv[1:])
dmu, dm, sm, q = dmu / 4160, dm / 4160, sm / 4160, q / 4112
print(f"driver map {dm:.0f}, service MAP call {sm:.0f}: {sm / dm:.2f} (target 1.5)")
print(f"driver map+unmap {dmu:.0f}, queue MAP+UNMAP {q:.0f}: {q / dmu:.2f} (target 1.3)")
PY

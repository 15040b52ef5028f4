#!/bin/bash
# Instructions per step of `scale.rs`'s loops (benches/common/scale.rs, run by
# examples/instructions.rs `scale` and `churn`), counted by callgrind: MAP then UNMAP of a
# page with 16 to 16,384 mappings live in 256 to 65,535 slots, and a churn step (UNMAP of
# a mapping at random, MAP of 1 to 16 pages). What the machine's load does not move, so
# that a change can be judged at every size. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -q -p smmuv3-service --example instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
steps=10000 # examples/instructions.rs SCALE_STEPS
count() {
	callgrind_annotate --inclusive=yes "$out/cg" | grep -E "^ *[0-9,]+ .*$1( \[.*)?$" |
		awk '{gsub(",", "", $1); if ($1 + 0 > max + 0) max = $1} END {print max}'
}
for cfg in "256 16" "4096 16" "4096 1024" "65535 16" "65535 1024" "65535 16384"; do
	# shellcheck disable=SC2086
	valgrind --tool=callgrind --callgrind-out-file="$out/cg" target/release/examples/instructions scale $cfg >/dev/null 2>&1
	set -- $cfg
	echo "MAP+UNMAP, $1 slots, $2 live: $(($(count 'scale::map_unmap') / steps))"
done
valgrind --tool=callgrind --callgrind-out-file="$out/cg" target/release/examples/instructions churn >/dev/null 2>&1
echo "churn step (UNMAP + MAP, 1 to 16 pages, 4,096 slots 3/4 full): $(($(count 'scale::Churn::steps') / steps))"

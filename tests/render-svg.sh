#!/usr/bin/env bash
# iommu-sdf's picture (system.reach.svg, as `report --svg` draws system.xml) rendered by
# headless Chromium, where it is installed (Debian's `chromium`): it renders, and a GRANT
# path shows on the page (the picture with the GRANT paths drawn as a PD's own capability
# renders differently). Say so and pass where there is no Chromium.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "render-svg: skipped: no chromium (apt-get install chromium)"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$top" && cargo run -q -p iommu-sdf -- report system.xml --svg "$work/system.svg" >/dev/null) || exit 1
sed 's/#d95f02/#1b1b1b/g; s/ stroke-dasharray="8 4"//g' "$work/system.svg" > "$work/no-grant.svg"
render() {
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
        --screenshot="$2" "file://$1" >/dev/null 2>&1
}
render "$work/system.svg" "$work/system.png" && render "$work/no-grant.svg" "$work/no-grant.png" || {
    echo "render-svg: FAIL: chromium did not render"; exit 1; }
# A PNG: the signature, then IHDR's width and height.
size=$(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); assert d[:8]==b"\x89PNG\r\n\x1a\n"; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$work/system.png") || {
    echo "render-svg: FAIL: not a PNG"; exit 1; }
if cmp -s "$work/system.png" "$work/no-grant.png"; then
    echo "render-svg: FAIL: the GRANT paths do not show"; exit 1
fi
echo "render-svg: system.xml's picture renders in $("$browser" --version 2>/dev/null | head -1) ($size), GRANT paths visible"

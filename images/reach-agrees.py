#!/usr/bin/env python3
"""iommu-sdf's reach report against what the SDK's Microkit tool built.

usage: reach-agrees.py REPORT.md MICROKIT_REPORT.txt CAPDL.json

REPORT.md is `iommu-sdf report`'s output; MICROKIT_REPORT.txt the Microkit tool's `-r`
report (its "Kernel Objects Details": every object with the physical address it placed it
at); CAPDL.json its `--capdl-json` spec (a CNode's size). For every row of the DMA
reachability table (a device's window onto a region) it checks, against the SDK's
placement, not iommu-sdf's own arithmetic:
  - each page of the range is the region's frame at that offset, at the physical address
    the row states (a row that names the wrong frames would send the device elsewhere);
  - no kernel object the SDK placed (another region's frame, a program's, a stack, a page
    table, a CNode, a TCB...) starts or lies inside the stated physical range: a device
    reaches only the region the report names.
Non-page objects whose size the text report does not give (TCB, endpoint, notification,
reply, scheduling context) count by their first byte only.
Exit 0 when every row holds, 1 with each disagreement printed.
"""
import json
import re
import sys

PAGE = {"4 KiB": 1 << 12, "2 MiB": 1 << 21, "1 GiB": 1 << 30}


def sdk_objects(report, capdl):
    cnode_bits = {}
    for o in json.load(open(capdl))["objects"]:
        body = o["object"]
        if isinstance(body, dict) and "CNode" in body:
            cnode_bits[o["name"]] = body["CNode"]["size_bits"]
    objs = []
    pat = re.compile(r"^\s*\d+ - (\w+)(?:\(([^)]*)\))?: '([^']*)' @ (0x[0-9a-fA-F]+)")
    for line in open(report):
        m = pat.match(line)
        if not m:
            continue
        kind, size, name, paddr = m.group(1), m.group(2), m.group(3), int(m.group(4), 16)
        if kind == "Page":
            length = PAGE[size]
        elif kind == "PageTable":
            length = 1 << 12
        elif kind == "CNode":
            # A slot is 32 bytes on a 64-bit seL4 (seL4_SlotBits = 5).
            length = 1 << (cnode_bits.get(name, 0) + 5)
        else:
            length = 1
        objs.append((paddr, length, kind, name))
    return objs


def rows(md):
    out = []
    in_table = False
    for line in open(md):
        if line.startswith("| Device | StreamID |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].startswith("---"):
                continue
            out.append(cells)
    return out


def hexrange(text):
    m = re.fullmatch(r"(0x[0-9a-f]+)\.\.(0x[0-9a-f]+)", text)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def main():
    md, report, capdl = sys.argv[1:4]
    objs = sdk_objects(report, capdl)
    frames = {}
    for paddr, length, kind, name in objs:
        m = re.fullmatch(r"frame_mr_(.*)_(\d{9})", name)
        if m:
            frames.setdefault(m.group(1), []).append((int(m.group(2)), paddr, length))
    bad = []
    table = rows(md)
    for cells in table:
        device, region, in_region, physical = cells[0], cells[3], hexrange(cells[4]), hexrange(cells[5])
        where = f"{device} -> {region} {cells[4]} {cells[5]}"
        placed_by_microkit = cells[5] == "(placed by Microkit)"
        if in_region is None or (physical is None and not placed_by_microkit):
            bad.append(f"{where}: a range the check cannot read")
            continue
        pages = sorted(frames.get(region, []))
        if not pages:
            bad.append(f"{where}: the SDK's tool placed no frame of `{region}`")
            continue
        if placed_by_microkit:
            # The report leaves the address to the Microkit tool; the IOMMU PD learns it
            # (a region_paddr setvar) as the region's base: the range must still be the
            # region's frames, one after another from there.
            base = pages[0][1]
            physical = (base + in_region[0], base + in_region[1])
        # The region's frames in order, as offsets: frame i covers [off, off + size).
        off, placed = 0, []
        for _, paddr, length in pages:
            placed.append((off, paddr, length))
            off += length
        lo, hi = in_region
        if physical[1] - physical[0] != hi - lo:
            bad.append(f"{where}: the physical range is not as long as the range in the region")
        a = lo
        while a < hi:
            hit = [(o, p, l) for o, p, l in placed if o <= a < o + l]
            if not hit:
                bad.append(f"{where}: offset {a:#x} is past the region's frames")
                break
            o, p, l = hit[0]
            if p + (a - o) != physical[0] + (a - lo):
                bad.append(f"{where}: offset {a:#x} is at {p + (a - o):#x} in the SDK's build, not {physical[0] + (a - lo):#x}")
                break
            a = o + l
        for paddr, length, kind, name in objs:
            if paddr < physical[1] and physical[0] < paddr + length and not re.fullmatch(rf"frame_mr_{re.escape(region)}_\d{{9}}", name):
                bad.append(f"{where}: the SDK placed {kind} `{name}` at {paddr:#x}..{paddr + length:#x}, inside it")
    for b in bad:
        print("  DISAGREE " + b)
    if not table:
        print("  (no DMA reachability rows)")
    print(f"reach-agrees: {len(table)} row(s), {len(bad)} disagreement(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Derive the polled system from system.xml: the same system with the SMMU's interrupts
wired to no one, as on an SMMU that signals by MSI only, so the IOMMU PD polls its event
queue on the physical timer's interrupt (pds/iommu/build.rs reads which it has).

Derived, not copied, so it cannot fall behind system.xml: every check of system.expect
applies, but for the differences polling makes, each replaced below. Every edit must
match exactly once, so a change of system.xml or system.expect that one of them no
longer fits stops the build instead of silently checking less.

usage: polled.py SYSTEM_XML SYSTEM_EXPECT OUT_XML OUT_EXPECT
"""
import sys

SMMU_IRQS = (
    '        <irq irq="106" id="10" trigger="edge" />\n',  # the event queue
    '        <irq irq="109" id="11" trigger="edge" />\n',  # global errors
)

# (what system.expect checks, what the polled system must show instead). A fault is
# attributed when it is read: a poll that comes after the UNMAP following the fault names
# no region for it, where the interrupt (the IOMMU PD at the highest priority) reads it
# before the driver goes on. So each accepts the attribution system.expect wants or none
# (NO_REGION, u32::MAX, in the driver's record), never another region
# (images/polled-test.sh).
EXPECT_EDITS = (
    (
        "the blocked DMA is reported to the driver, attributed|"
        r"^edu-driver: fault notified: stream 0x10 write at iova 0x100002000\.\.=0x1000020fc \(63 more\), region 0 offset 0x1fff" "\n",
        "the blocked DMA is reported to the driver, found by a poll (which may come after the UNMAP that follows it: then no region is named)|"
        r"^edu-driver: fault notified: stream 0x10 write at iova 0x100002000\.\.=0x1000020fc \(63 more\), "
        r"region (0 offset 0x1fff|4294967295 offset 0x0)[[:space:]]*$" "\n",
    ),
    (
        "the IOMMU PD names the PD, device, IOVA and region of a fault|"
        r"^iommu: fault for edu_driver: device edu_a \(stream 0x10\) write at iova 0x100002000\.\.=0x1000020fc, next to region edu_buffers" "\n",
        "the IOMMU PD names the PD, device and IOVA of a fault it polled|"
        r"^iommu: fault for edu_driver: device edu_a \(stream 0x10\) write at iova 0x100002000\.\.=0x1000020fc, "
        r"(next to region edu_buffers |in no region it was given)" "\n",
    ),
)
POLLING = ("with no SMMU interrupt wired to it, the IOMMU PD polls|"
           r"^iommu: no SMMU interrupt wired here: polling the event queue every 10 ms" "\n")


def replace_once(text: str, old: str, new: str, what: str) -> str:
    n = text.count(old)
    if n != 1:
        sys.exit(f"polled.py: {what} appears {n} times, not once: {old.strip()!r}\n"
                 "fix: update images/polled.py to what system.xml/system.expect say now")
    return text.replace(old, new)


def main() -> None:
    xml_in, expect_in, xml_out, expect_out = sys.argv[1:5]
    xml = open(xml_in).read()
    for irq in SMMU_IRQS:
        xml = replace_once(xml, irq, "", "system.xml's SMMU interrupt")
    xml = replace_once(xml, "?>\n", "?>\n<!-- images/polled.py wrote this from system.xml, without the SMMU's interrupts. -->\n",
                       "system.xml's XML declaration")
    expect = open(expect_in).read()
    for old, new in EXPECT_EDITS:
        expect = replace_once(expect, old, new, "system.expect's check")
    expect = POLLING + expect
    open(xml_out, "w").write(xml)
    open(expect_out, "w").write(expect)


if __name__ == "__main__":
    main()

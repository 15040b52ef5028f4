//! Device memory and the host bridge's windows, as DMA sees them.
//!
//! A device given DMA over device memory (ECAM, a BAR or any other part of the host
//! bridge's windows, the SMMU's registers, a UART's or the interrupt controller's frame)
//! would write configuration space or another device's registers, or the SMMU's: so no
//! capability or static map (a guest's RAM given to its device included) may reach a
//! fixed-address region that is not wholly inside the board's RAM (`Board::ram`), by
//! whatever region name. And an IOVA inside the host bridge's memory window is not
//! a DMA address: a bridge routes a request at it to the peer whose window holds it (or
//! refuses it), never to the SMMU. Linux reserves the host bridge's windows in every PCI
//! device's IOVA space for this reason (drivers/iommu/dma-iommu.c,
//! `iova_reserve_pci_windows`); here a PCI function's IOVA window keeps clear of it.

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};
use crate::topology::bus;

/// Every rule about device memory under DMA and IOVA windows.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    dma_over_device_memory(sys, board, out);
    prefilled_device_memory(sys, board, out);
    iova_windows(sys, board, out);
    legacy_vga(sys, out);
}

/// The legacy VGA frame buffer, memory 0xa_0000..0xc_0000 (PCI Local Bus 3.0, 6.2.2 and
/// Appendix D, class 03h 00h; PCI-to-PCI Bridge Architecture 1.2, 4.5.1): a VGA-compatible
/// function decodes it whenever its Memory Space is on, whatever its BARs, and a bridge
/// with VGA Enable forwards it downstream whatever its windows.
pub const LEGACY_VGA: (u64, u64) = (0xa_0000, 0x2_0000);

/// No PCI function's DMA address, and no BAR window, in the legacy VGA range. The PCI
/// owner turns VGA Enable off on every bridge and leaves closed one where it does not
/// read back off, so no bridge forwards the range; but a VGA-compatible function claims
/// it by itself (on a conventional bus every function sees a peer's DMA, and the one that
/// decodes it answers before the bridge above forwards it to the SMMU), and the
/// description says nothing of classes. So the range is refused always, wherever the
/// function sits: 128 KiB below 1 MiB, which no IOVA window here needs.
fn legacy_vga(sys: &System, out: &mut Vec<Problem>) {
    let (base, size) = LEGACY_VGA;
    let range = format!("{base:#x}..{:#x}", base + size);
    for s in &sys.io_spaces {
        if s.rid.is_none() && s.extra_rids.iter().all(Option::is_none) {
            continue;
        }
        if s.vm.is_none() && overlaps((s.iova_base, s.iova_size), LEGACY_VGA) {
            out.push(p(
                s.line,
                "io_address_space",
                format!(
                    "`{}`'s IOVA window {:#x}+{:#x} holds the legacy VGA range {range}: a VGA-compatible function decodes a DMA there itself, and it never reaches the SMMU",
                    s.name, s.iova_base, s.iova_size
                ),
                "give it an IOVA window above 1 MiB, e.g. iova_base=\"0x1_0000_0000\" iova_size=\"0x10_0000\"",
            ));
        }
        for m in s.iomaps.iter().filter(|m| m.guest) {
            let len = sys.region(&m.mr).map_or(0, |r| r.size);
            if overlaps((m.iovaddr, len), LEGACY_VGA) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "`{}` DMAs to its guest's RAM `{}` at guest-physical {:#x}+{len:#x}, which holds the legacy VGA range {range}: a VGA-compatible function decodes a DMA there itself, and it never reaches the SMMU",
                        s.name, m.mr, m.iovaddr
                    ),
                    "place the guest's RAM above 1 MiB (guest-physical)",
                ));
            }
        }
        let bar = s.bar.as_deref().and_then(|b| sys.region(b));
        if let Some((r, pa)) = bar.and_then(|r| Some((r, r.phys_addr?))) {
            if overlaps((pa, r.size), LEGACY_VGA) {
                out.push(p(
                    s.line,
                    "io_address_space",
                    format!(
                        "`{}`'s BAR window `{}` ({pa:#x}+{:#x}) holds the legacy VGA range {range}, which any VGA-compatible function decodes as well",
                        s.name, r.name, r.size
                    ),
                    "place the BAR window above 1 MiB in the host bridge's memory window",
                ));
            }
        }
    }
}

/// The board's device memory DMA must never reach, by name: (what, base, size). Anything
/// else outside the board's RAM is refused too, as "not RAM".
fn device_memory(board: &Board) -> Vec<(&'static str, u64, u64)> {
    let mut out = Vec::new();
    if let Some(pci) = &board.pci {
        out.push(("PCI configuration space (ECAM)", pci.ecam.0, pci.ecam.1));
        out.push(("the host bridge's PCI memory window (BARs)", pci.mem.0, pci.mem.1));
        out.push(("the host bridge's I/O window", pci.io.0, pci.io.1));
    }
    if let Some(frame) = board.smmu_frame() {
        out.push(("the SMMU's registers", frame.0, frame.1));
    }
    out
}

/// What is wrong with a device reaching region `mr`, if anything: where it is, and what the
/// device would write there. Fixed addresses only: the Microkit tool places every other
/// region in RAM, from the kernel's memory untypeds.
///
/// The Microkit tool takes a fixed `phys_addr` anywhere an untyped covers it, device
/// untypeds included (tool/microkit/src/capdl/allocation.rs: a frame with a paddr is cut
/// from whichever untyped holds it), so a region at the UART's or the interrupt
/// controller's frame builds; only this rule keeps it from a device.
fn not_memory(
    sys: &System,
    board: &Board,
    memory: &[(&'static str, u64, u64)],
    mr: &str,
) -> Option<(String, &'static str)> {
    let r = sys.region(mr)?;
    let (s, e) = r.phys_range()?;
    if let Some((what, base, size)) =
        memory.iter().find(|(_, base, size)| s < u128::from(*base) + u128::from(*size) && u128::from(*base) < e)
    {
        return Some((format!("lies in {what} ({base:#x}+{size:#x})"), "device registers, not memory"));
    }
    // A board this tool does not know has no RAM table; `<iommu>` is refused there, so no
    // device is served whatever this says. A range past the board's physical addresses is
    // the region's own problem (`regions`), said once there.
    if board.ram.is_empty() || board.in_ram(s, e) || e > board.pa_end() {
        return None;
    }
    Some((
        format!("is at {s:#x}..{e:#x}, not wholly in board {}'s RAM ({})", board.name, board.ram_text()),
        "device registers or the firmware's memory, not the system's RAM",
    ))
}

/// No prefill of device memory. The Microkit tool loads a region's prefill into its
/// frames at boot, before any PD runs, the IOMMU PD included: for a fixed-address region
/// outside RAM those frames are a device's registers (the SMMU's, ECAM, a DMA engine's),
/// written with the file's bytes while every stream is as reset left it (on QEMU 7.2,
/// bypassing). Both tools built such an image.
fn prefilled_device_memory(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    if sys.iommu.is_none() {
        return;
    }
    let memory = device_memory(board);
    for r in sys.regions.iter().filter(|r| r.prefill_path.is_some() || r.prefill_bootinfo.is_some()) {
        let Some((why, what)) = not_memory(sys, board, &memory, &r.name) else { continue };
        let attribute = if r.prefill_path.is_some() { "prefill_path" } else { "prefill_bootinfo" };
        out.push(p(
            r.line,
            "memory_region",
            format!(
                "`{}` is prefilled ({attribute}), and it is device memory: it {why}; the Microkit tool loads a prefill at boot, before any PD runs, the IOMMU PD included, so the file would be written into {what}",
                r.name
            ),
            format!("remove {attribute}: a device's registers are its driver's to write, once the IOMMU PD has set the SMMU up"),
        ));
    }
}

fn dma_over_device_memory(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let memory = device_memory(board);
    for c in &sys.caps {
        let Some((mr, _)) = resolve(sys, c) else { continue };
        if let Some((why, what)) = not_memory(sys, board, &memory, mr) {
            out.push(p(
                c.line,
                "dma_capability",
                format!("`{}` gives DMA over `{mr}`, which {why}: a device would write {what}", c.name),
                "give DMA capabilities over RAM only: a region without phys_addr (the Microkit tool places it in RAM), or one whose phys_addr and size lie in the board's RAM",
            ));
        }
    }
    for s in &sys.io_spaces {
        for m in &s.iomaps {
            if let Some((why, what)) = not_memory(sys, board, &memory, &m.mr) {
                let how = if m.guest { "is given, as its guest's RAM," } else { "iomaps" };
                out.push(p(
                    m.line,
                    m.element(),
                    format!("`{}` {how} `{}`, which {why}: the device would write {what}", s.name, m.mr),
                    if m.guest {
                        "give the guest RAM (a region without phys_addr, or one in the board's RAM), and map its device memory cached=\"false\", which is not given to its devices"
                    } else {
                        "iomap RAM only: a region without phys_addr (the Microkit tool places it in RAM), or one whose phys_addr and size lie in the board's RAM"
                    },
                ));
            }
        }
    }
}

fn iova_windows(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(pci) = &board.pci else { return };
    let (base, size) = pci.mem;
    let inside = |start: u64, len: u64| overlaps((start, len), (base, size));
    for s in &sys.io_spaces {
        let Some(rid) = s.rid else { continue };
        match &s.vm {
            None if inside(s.iova_base, s.iova_size) => out.push(p(
                s.line,
                "io_address_space",
                format!(
                    "`{}`'s IOVA window {:#x}+{:#x} overlaps the host bridge's PCI memory window {base:#x}+{size:#x}: a DMA there is routed to a peer's BAR, not to the SMMU",
                    s.name, s.iova_base, s.iova_size
                ),
                "give it an IOVA window clear of the host bridge's windows, e.g. iova_base=\"0x1_0000_0000\" iova_size=\"0x10_0000\"",
            )),
            None => {}
            // A passed-through function's IOVAs are its guest's RAM addresses, fixed by the
            // guest's program. On a host bridge that routes nothing between root-bus
            // functions (QEMU virt's), a root-bus function's DMA at them reaches the SMMU;
            // below a bridge it may not.
            Some(guest) => {
                let routed = bus(rid) != 0 || pci.root_bus_peer_to_peer;
                for m in s.iomaps.iter().filter(|m| routed && m.guest) {
                    let len = sys.region(&m.mr).map_or(0, |r| r.size);
                    if inside(m.iovaddr, len) {
                        out.push(p(
                            m.line,
                            "map",
                            format!(
                                "guest `{guest}`'s RAM `{}` at guest-physical {:#x} is what `{}` ({}) DMAs to, and it lies in the host bridge's PCI memory window {base:#x}+{size:#x}: a bridge above the device routes a DMA there to a peer, not to the SMMU",
                                m.mr, m.iovaddr, s.name, bdf(rid)
                            ),
                            "place the guest's RAM outside the host bridge's windows, or pass through a function on the root bus",
                        ));
                    }
                }
            }
        }
    }
}

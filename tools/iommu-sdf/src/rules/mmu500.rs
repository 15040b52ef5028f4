//! What a board's MMU-500 (SMMUv2) can hold: the IOMMU PD's SMMUv2 backend
//! (`smmuv2-service`) gives each device a stage-1 context bank of its own and each of its
//! StreamIDs a stream match register (SMR), and an MMU-500 has few of either (ZynqMP 16
//! banks and 48 SMRs); one bank more is the driver's sink for blocked devices' streams, so
//! a ZynqMP serves 15 devices, an i.MX8QXP 31. A description that needs more would be refused at start-up by the
//! IOMMU PD (`ContextBanksExhausted`, `SmrsExhausted`: nothing served, every stream
//! aborting); refused here first, with the count. And each StreamID must be one the SoC
//! can present: on ZynqMP a TBU that exists, on i.MX8QXP an ID the SCU can assign.
//! (The StreamID width is `devices`' rule, for every SMMU.) And the interrupt the IOMMU PD
//! takes as the MMU-500's (id 10) is the board's.

use crate::board::{Board, BoardIommu, Mmu500, StreamScheme};
use crate::model::*;
use crate::problem::{p, Problem};

/// Every MMU-500 rule.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let BoardIommu::Mmu500(m) = board.iommu else { return };
    if sys.iommu.is_none() {
        return;
    }
    banks(sys, board, &m, out);
    smrs(sys, board, &m, out);
    schemes(sys, board, &m, out);
    interrupt(sys, board, &m, out);
}

/// An MMU-500 raises its global and context faults on one line (pds/iommu: id 10 is it):
/// another interrupt there and the IOMMU PD waits for one that never comes, reading no
/// fault and stopping no storm until a request wakes it. (Its build refuses it too.)
fn interrupt(sys: &System, board: &Board, m: &Mmu500, out: &mut Vec<Problem>) {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    for i in iommu.irqs.iter().filter(|i| i.id == 10 && i.irq.is_some_and(|n| n != m.irq)) {
        out.push(p(
            i.line,
            "irq",
            format!(
                "the IOMMU PD `{}` takes interrupt {} on id 10 as its MMU-500's, and board {}'s MMU-500 ({}) raises its faults on {}",
                iommu.name,
                i.irq.unwrap_or_default(),
                board.name,
                m.soc,
                m.irq
            ),
            format!("give id 10 irq=\"{}\", the MMU-500's", m.irq),
        ));
    }
}

/// One stage-1 context bank per device, and one the sink's: reported at the first device
/// past the count.
fn banks(sys: &System, board: &Board, m: &Mmu500, out: &mut Vec<Problem>) {
    let Some(s) = sys.io_spaces.get(m.device_banks()) else { return };
    out.push(p(
        s.line,
        "io_address_space",
        format!(
            "`{}` is device number {} and board {}'s MMU-500 ({}) has {} stage-1 context banks, one of them the IOMMU PD's sink for blocked devices' DMA: each device needs one of its own, so {} devices fit, and {} are described",
            s.name,
            m.device_banks() + 1,
            board.name,
            m.soc,
            m.context_banks,
            m.device_banks(),
            sys.io_spaces.len()
        ),
        format!(
            "describe at most {} devices on this board, or describe functions that share an address space as one device (streams=\"...\"): a bank is an address space",
            m.device_banks()
        ),
    ));
}

/// One SMR per StreamID (each device's first and its `streams`): reported at the device
/// whose StreamIDs go past the count.
fn smrs(sys: &System, board: &Board, m: &Mmu500, out: &mut Vec<Problem>) {
    let total: usize = sys.io_spaces.iter().map(|s| 1 + s.extra_streams.len()).sum();
    let mut used = 0;
    for s in &sys.io_spaces {
        used += 1 + s.extra_streams.len();
        if used > m.smrs {
            out.push(p(
                s.line,
                "io_address_space",
                format!(
                    "`{}`'s StreamIDs take the SMR count to {used}, and board {}'s MMU-500 ({}) has {} stream match registers: the description needs {total}, one per StreamID",
                    s.name, board.name, m.soc, m.smrs
                ),
                format!("give the devices at most {} StreamIDs in all (fewer in streams=\"...\")", m.smrs),
            ));
            return;
        }
    }
}

/// Each StreamID is one the SoC makes.
fn schemes(sys: &System, board: &Board, m: &Mmu500, out: &mut Vec<Problem>) {
    for s in &sys.io_spaces {
        for x in std::iter::once(s.stream).chain(s.extra_streams.iter().copied()) {
            // Wider than the SMMU's StreamIDs: `devices` says so.
            if u64::from(x) >> m.stream_bits != 0 {
                continue;
            }
            let wrong = match m.scheme {
                StreamScheme::TbuMaster { tbus } if x >> 10 >= tbus => Some((
                    format!(
                        "StreamID {x:#x} of `{}` names TBU {} (bits [14:10]) and master {:#x}; board {}'s {} has TBU0 to TBU{}",
                        s.name,
                        x >> 10,
                        x & 0x3ff,
                        board.name,
                        m.soc,
                        tbus - 1
                    ),
                    format!(
                        "give the StreamID the device has in {}'s master ID table (TBU << 10 | master ID; GDMA channel 1 is 0x14e8), as its device tree's iommus = <&smmu ...> does",
                        m.soc
                    ),
                )),
                StreamScheme::Scu { bits } if x >> bits != 0 => Some((
                    format!(
                        "StreamID {x:#x} of `{}` is wider than the {bits} bits {}'s System Controller assigns to a master (board {})",
                        s.name, m.soc, board.name
                    ),
                    format!(
                        "give the StreamID the SCU firmware assigns to the device (below {:#x}), as its device tree's iommus = <&smmu SID {:#x}> does",
                        1u32 << bits,
                        m.smr_mask
                    ),
                )),
                _ => None,
            };
            if let Some((message, fix)) = wrong {
                out.push(p(s.line, "io_address_space", message, fix));
            }
        }
    }
}

//! Stopping a function, as its owner does when the device's VMM stops the virtual machine
//! (STOP) or crashes (teardown), after the IOMMU has confirmed the device's block: what
//! vfio-pci does when a device is released (Bus Master off, a reset, the saved state
//! back), so that the next guest, or nobody, inherits no running DMA engine and no state
//! of the last one.
//!
//! 1. Bus Master, Memory Space and I/O Space off and INTx disabled (Command alone, 16
//!    bits: Status is not written), so the function starts no new request and asserts no
//!    INTx line it may share with another driver's function (`FUNCTION_OFF` is said only
//!    as Bus Master, I/O Space and both enables read back off); and MSI Enable and MSI-X Enable
//!    off (PCI Local Bus 3.0, 6.8.1.3 and 6.8.2.3), as vfio-pci turns them off when a
//!    device is released: a function without FLR would otherwise keep the MSI address
//!    and data its last driver (or guest) chose, and write there, in its next owner's
//!    address space, once that owner turns Bus Master on. Where they are is what the
//!    list shows now and what it showed at boot (`BootCaps`, `ConfigSpace::recorded`):
//!    a function that unlists its MSI, its FLR or its PM capability before its stop is
//!    stopped with them all the same.
//! 2. If the function advertises Function Level Reset (its PCI Express capability's
//!    Device Capabilities, bit 28; PCIe Base 4.0, 7.5.3.3), wait up to 100 ms for
//!    Transactions Pending (Device Status, bit 5) to clear (the implementation note of
//!    6.6.2: requests issued before Bus Master went off may still complete), then write
//!    Initiate Function Level Reset (Device Control, bit 15; 7.5.3.4) and wait 100 ms,
//!    in which 6.6.2 lets the function finish its reset; then up to a second more for it
//!    to answer configuration requests again (Vendor ID neither all ones nor the 0x0001
//!    of a Configuration Request Retry Status). A function without it whose Advanced
//!    Features capability advertises FLR and Transactions Pending (a conventional PCI
//!    function's FLR) is reset through that the same way, as Linux's `pci_af_flr` does.
//!    A function with neither FLR whose Power
//!    Management capability says a D3hot-to-D0 transition resets it (PMCSR's
//!    No_Soft_Reset, bit 3, clear; PCI Bus Power Management 1.2, 3.2.4 and 5.4.1) is
//!    reset that way instead, as Linux's `pci_pm_reset` does: D3hot, 10 ms (the D3hot
//!    recovery time, table 5-6), D0, 10 ms, then the same second to answer (whatever
//!    state it reads first, unlike Linux, which asks for D0: the function's driver cannot
//!    write PMCSR here, so another state is the function's own doing, and D3hot then D0
//!    resets it from any). Either reset returns the BARs to 0; a function whose BARs still read
//!    where the owner placed them did not reset (a No_Soft_Reset that lies, as Linux's
//!    `quirk_no_pm_reset` knows of some GPUs, or an FLR it ignores), and its stop says
//!    `RESET_IGNORED`, not FLR or PM_RESET.
//! 3. Write back what the owner placed and an FLR clears: the BARs where the owner placed
//!    them at boot, planned again from the description (`ConfigSpace::placement`), not
//!    as they read (a function that came back late from an earlier reset reads its reset
//!    values, and would decode there); the expansion ROM BAR and Interrupt Line as they
//!    read before step 1 (and the BARs of a function whose BARs were never placed); and
//!    Command as the owner left it at boot (Bus Master off, INTx disabled, Memory Space on
//!    where the BARs read back where the owner placed them, since the stopped driver or
//!    VMM still maps them and a load from a BAR that does not decode can end in an SError
//!    on Arm hardware; its other bits, which no driver may write, as they were). Read back
//!    and compared. Memory Space is off only inside the call, in which the caller waits.
//!
//! With neither reset, what the last driver wrote elsewhere stays: MSI's address and data (its
//! enable off), the device-specific registers at 0x40..0x100, and whatever state the
//! device keeps behind its BARs (a DMA engine's descriptors), which its next owner finds
//! when it turns Bus Master on; the IOMMU confines what the device does with it to that
//! owner's mappings.
//!
//! A function with neither reset gets steps 1 and 3 (its BARs read back unchanged). A bridge is
//! not stopped here (its Command forwards other functions' DMA).
//!
//! Step 2 holds the owner for 100 ms at least (up to 1.2 s), in which, on the IOMMU PD
//! (passive, priority 254, a busy wait), nothing of lower priority runs. So the caller
//! may ask for steps 1 and 3 alone (`Reset::Owed`): the function stops mastering and
//! decoding at once, and the reset is owed, done before the function runs again (the
//! service rations each client's resets: `Service`'s STOP and RESUME).

use iommu_protocol::stop;
use iommu_protocol::ErrorCode;

use super::{
    capabilities, decode, messages_off, messages_on, place_again, plan_bars, present, read, reg, BarPlan, Cap,
    ConfigSpace, CMD_IO_SPACE, MAX_CAPS,
};

/// The wait after Initiate Function Level Reset before the function is accessed again
/// (PCIe Base 4.0, 6.6.2).
pub const FLR_WAIT_MS: u32 = 100;
/// How long Transactions Pending may stay set before the reset is done anyway.
const PENDING_WAIT_MS: u32 = 100;
/// How long a function may take to answer again after the 100 ms (6.6.2 allows Retry
/// Status completions for up to 1 s after a reset).
const RETURN_WAIT_MS: u32 = 1000;
/// The step of both polls.
const POLL_MS: u32 = 10;

/// How long a function takes to enter D3hot and to come back to D0 before it may be
/// accessed (PCI Bus Power Management 1.2, table 5-6; Linux's `pci_dev_d3_sleep`).
const D3HOT_WAIT_MS: u32 = 10;
/// Power Management Control/Status (16 bits), from the PM capability's start.
const PM_CSR: u16 = 0x04;
/// PMCSR: PowerState (bits 1:0; 0 is D0, 3 is D3hot), No_Soft_Reset, PME_Status (a
/// write-one-to-clear bit, written as 0 here).
const PM_STATE: u16 = 0b11;
const PM_D3HOT: u16 = 0b11;
const PM_NO_SOFT_RESET: u16 = 1 << 3;
const PM_PME_STATUS: u16 = 1 << 15;
/// PCI Express capability registers (PCIe Base 4.0, 7.5.3): offsets from its start.
const EXP_DEVCAP: u16 = 0x04;
const EXP_DEVCTL: u16 = 0x08;
const EXP_DEVSTA: u16 = 0x0a;
/// Device Capabilities: Function Level Reset Capability.
const DEVCAP_FLR: u32 = 1 << 28;
/// Device Control: Initiate Function Level Reset.
const DEVCTL_BCR_FLR: u16 = 1 << 15;
/// Device Status: Transactions Pending.
const DEVSTA_TRPND: u16 = 1 << 5;
/// The Advanced Features capability (PCI Advanced Capabilities ECN; Linux's `pci_regs.h`):
/// its ID; AF Capabilities (8 bits, 3 in), with Transactions Pending and FLR; AF Control
/// (4 in), with Initiate FLR; AF Status (5 in), with Transactions Pending.
const CAP_AF: u8 = 0x13;
const AF_CAP: u16 = 0x03;
const AF_CAP_TP: u8 = 1 << 0;
const AF_CAP_FLR: u8 = 1 << 1;
const AF_CTRL: u16 = 0x04;
const AF_CTRL_FLR: u32 = 1 << 0;
const AF_STATUS: u16 = 0x05;
const AF_STATUS_TP: u32 = 1 << 0;
/// Interrupt Line (8 bits).
const INTERRUPT_LINE: u16 = 0x3c;
/// What a Vendor ID read returns while the function answers with Configuration Request
/// Retry Status and software visibility is on (PCIe Base 4.0, 2.3.2).
const VENDOR_CRS: u32 = 0x0001;

/// What `stop_function` did, as STOP's reply carries it (`iommu_protocol::stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stopped(pub u64);

impl Stopped {
    /// Bus Master, Memory and I/O Space, MSI and MSI-X all read back off at the end.
    pub fn off(self) -> bool {
        self.0 & stop::FUNCTION_OFF != 0
    }
    /// Reset by FLR, and back.
    pub fn reset(self) -> bool {
        self.0 & stop::FLR != 0
    }
    /// Reset by D3hot and back to D0 (it has no FLR), and back.
    pub fn pm_reset(self) -> bool {
        self.0 & stop::PM_RESET != 0
    }
    /// A reset was started and the function did not answer again within the wait.
    pub fn lost(self) -> bool {
        self.0 & stop::FLR_LOST != 0
    }
    /// What the owner placed reads back as before.
    pub fn restored(self) -> bool {
        self.0 & stop::RESTORED != 0
    }
    /// A reset (FLR, or D3hot and back) was started, whether or not the function came
    /// back.
    pub fn reset_started(self) -> bool {
        self.0 & (stop::FLR | stop::PM_RESET | stop::FLR_LOST | stop::RESET_IGNORED) != 0
    }
    /// A reset was done and the function answered, but kept what the owner placed: it
    /// did not reset.
    pub fn reset_ignored(self) -> bool {
        self.0 & stop::RESET_IGNORED != 0
    }
    /// The function has a reset and was not reset: `Reset::Owed`.
    pub fn reset_owed(self) -> bool {
        self.0 & stop::RESET_OWED != 0
    }
}

/// The registers step 3 writes back, in the order written: (offset, width).
const SAVED: [(u16, u8); 8] = [
    (reg::BAR0, 4),
    (reg::BAR0 + 4, 4),
    (reg::BAR0 + 8, 4),
    (reg::BAR0 + 12, 4),
    (reg::BAR0 + 16, 4),
    (reg::BAR0 + 20, 4),
    (reg::ROM, 4),
    (INTERRUPT_LINE, 1),
];

/// Whether `stop_function` resets a function that has FLR now, or leaves the reset owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Steps 1 to 3.
    Now,
    /// Steps 1 and 3; a function with a reset answers `RESET_OWED`.
    Owed,
}

/// Stop function `rid` as the module says. `DeviceMissing` if nothing answers there,
/// `ConfigDenied` if it is not a type-0 function; otherwise what was done (a function
/// that does not come back from its reset is `FLR_LOST`, not an error: its DMA is
/// blocked at the IOMMU, which is what STOP promises).
pub fn stop_function(cs: &mut dyn ConfigSpace, rid: u16, reset: Reset) -> Result<Stopped, ErrorCode> {
    present(cs, rid)?;
    if read(cs, rid, reg::HEADER_TYPE, 1)? & 0x7f != 0 {
        return Err(ErrorCode::ConfigDenied);
    }
    let mut saved = [0u32; SAVED.len()];
    for (v, &(off, width)) in saved.iter_mut().zip(&SAVED) {
        *v = read(cs, rid, off, width)?;
    }
    let command = read(cs, rid, reg::COMMAND, 2)? as u16;
    // INTx disabled too: a stopped function must not hold an INTx line it may share with
    // another driver's function asserted (its next driver clears it if it takes INTx).
    let quiet = command & !(reg::CMD_DRIVER | CMD_IO_SPACE) | reg::CMD_INTX_DISABLE;
    let fail = ErrorCode::NoConfigSpace;
    cs.write(rid, reg::COMMAND, 2, u32::from(quiet)).ok_or(fail)?;
    let mut caps = [Cap::default(); MAX_CAPS];
    let n = capabilities(cs, rid, &mut caps)?;
    // MSI and MSI-X where the list shows them now and where it showed them at boot: a
    // function that unlists them at its stop still has them.
    let boot = cs.recorded(rid).map(|r| r.caps).unwrap_or_default();
    let (booted, m) = boot.messages();
    let (caps, booted) = (&caps[..n], &booted[..m]);
    messages_off(cs, rid, caps)?;
    messages_off(cs, rid, booted)?;
    // Said only as read back (here for a function that then does not come back from its
    // reset, at the end otherwise): a device may keep an enable, or set it again itself.
    let mut done = if silent(cs, rid, caps, booted)? { stop::FUNCTION_OFF } else { 0 };
    // Its placement, planned now that it decodes nothing, and written before the reset,
    // so that a reset that keeps it is told from one that clears it even for a function
    // whose BARs did not read as placed. BARs that no longer fit the window: not the
    // function the owner placed; as missing.
    let plan = match cs.placement(rid) {
        Some(p) => Some(plan_bars(cs, rid, p.base, p.size).map_err(|_| ErrorCode::DeviceMissing)?),
        None => None,
    };
    if let Some(plan) = &plan {
        plan.write(cs, rid).ok_or(fail)?;
    }

    // Its resets as boot recorded them, or as the list shows them now: a function that
    // hides its FLR (or its PM capability) at its stop is reset all the same. The PCI
    // Express FLR first, then Advanced Features' (a conventional function's), then PM's
    // D3hot, as Linux's `pci_reset_fn_methods` orders them.
    let now = BootCaps::of(cs, rid, caps)?;
    let flr = match (boot.flr().or(now.flr()), boot.af_flr().or(now.af_flr())) {
        (Some(exp), _) => Some(Flr::Express(exp)),
        (None, Some(af)) => Some(Flr::AdvancedFeatures(af)),
        (None, None) => None,
    };
    let pm = match flr {
        Some(_) => None,
        None => boot.pm_reset().or(now.pm_reset()),
    };
    if (flr.is_some() || pm.is_some()) && reset == Reset::Owed {
        done |= stop::RESET_OWED;
    }
    if let Some(pm) = pm.filter(|_| reset == Reset::Now) {
        let csr = read(cs, rid, pm + PM_CSR, 2)? as u16 & !(PM_STATE | PM_PME_STATUS);
        cs.write(rid, pm + PM_CSR, 2, u32::from(csr | PM_D3HOT)).ok_or(fail)?;
        cs.wait_ms(D3HOT_WAIT_MS);
        cs.write(rid, pm + PM_CSR, 2, u32::from(csr)).ok_or(fail)?;
        cs.wait_ms(D3HOT_WAIT_MS);
        if !answers(cs, rid)? {
            return Ok(Stopped(done | stop::FLR_LOST));
        }
        done |= if kept_placement(cs, rid, &saved, plan.as_ref())? { stop::RESET_IGNORED } else { stop::PM_RESET };
    }
    if let Some(flr) = flr.filter(|_| reset == Reset::Now) {
        let mut waited = 0;
        let (status, width, pending) = flr.pending();
        while read(cs, rid, status, width)? & pending != 0 {
            if waited >= PENDING_WAIT_MS {
                done |= stop::PENDING;
                break;
            }
            cs.wait_ms(POLL_MS);
            waited += POLL_MS;
        }
        flr.initiate(cs, rid)?;
        cs.wait_ms(FLR_WAIT_MS);
        if !answers(cs, rid)? {
            return Ok(Stopped(done | stop::FLR_LOST));
        }
        done |= if kept_placement(cs, rid, &saved, plan.as_ref())? { stop::RESET_IGNORED } else { stop::FLR };
    }

    // The BARs from the plan where there is one; the saved reads for the rest.
    let from_reads = if plan.is_some() { 6 } else { 0 };
    for (&v, &(off, width)) in saved.iter().zip(&SAVED).skip(from_reads) {
        cs.write(rid, off, width, v).ok_or(fail)?;
    }
    if let Some(plan) = &plan {
        plan.write(cs, rid).ok_or(fail)?;
    }
    // Decoding on again where the owner placed the BARs and they read so: its driver (or
    // its VMM) still maps them (`super::decode`). Bus Master stays off.
    let decodes = match &plan {
        Some(plan) => plan.reads_back(cs, rid)?,
        None => false,
    };
    let end = if decodes { quiet | reg::CMD_MEMORY } else { quiet };
    cs.write(rid, reg::COMMAND, 2, u32::from(end)).ok_or(fail)?;
    // Interrupt Disable is not compared: a function without INTx may hardwire it to 0.
    let owned = reg::CMD_MEMORY | reg::CMD_BUS_MASTER | CMD_IO_SPACE;
    let mut same = read(cs, rid, reg::COMMAND, 2)? as u16 & owned == end & owned;
    for (&v, &(off, width)) in saved.iter().zip(&SAVED).skip(from_reads) {
        same &= read(cs, rid, off, width)? == v;
    }
    if let Some(plan) = &plan {
        same &= plan.reads_back(cs, rid)?;
    }
    if same {
        done |= stop::RESTORED;
    }
    done &= !stop::FUNCTION_OFF;
    if silent(cs, rid, caps, booted)? {
        done |= stop::FUNCTION_OFF;
    }
    Ok(Stopped(done))
}

/// A Function Level Reset, and where its registers are.
#[derive(Debug, Clone, Copy)]
enum Flr {
    /// The PCI Express capability's, at this offset.
    Express(u16),
    /// The Advanced Features capability's, at this offset.
    AdvancedFeatures(u16),
}

impl Flr {
    /// The register that says Transactions Pending: (offset, width, its bit).
    fn pending(self) -> (u16, u8, u32) {
        match self {
            Flr::Express(exp) => (exp + EXP_DEVSTA, 2, u32::from(DEVSTA_TRPND)),
            Flr::AdvancedFeatures(af) => (af + AF_STATUS, 1, AF_STATUS_TP),
        }
    }

    /// Initiate it.
    fn initiate(self, cs: &mut dyn ConfigSpace, rid: u16) -> Result<(), ErrorCode> {
        let fail = ErrorCode::NoConfigSpace;
        match self {
            Flr::Express(exp) => {
                let control = read(cs, rid, exp + EXP_DEVCTL, 2)? as u16;
                cs.write(rid, exp + EXP_DEVCTL, 2, u32::from(control | DEVCTL_BCR_FLR)).ok_or(fail)
            }
            Flr::AdvancedFeatures(af) => cs.write(rid, af + AF_CTRL, 1, AF_CTRL_FLR).ok_or(fail),
        }
    }
}

/// Whether function `rid` (capability list `caps` now, its MSI and MSI-X at boot
/// `booted`) reads as masters nothing: Bus Master and I/O Space off in Command, MSI and
/// MSI-X disabled. Memory Space only answers, and Interrupt Disable only keeps an INTx
/// line quiet (a function that has no INTx may hardwire it to 0): neither is asked, or
/// such a function could never master again (`BusMaster::KeptOff`).
fn silent(cs: &mut dyn ConfigSpace, rid: u16, caps: &[Cap], booted: &[Cap]) -> Result<bool, ErrorCode> {
    let command = read(cs, rid, reg::COMMAND, 2)? as u16;
    let quiet = command & (reg::CMD_BUS_MASTER | CMD_IO_SPACE) == 0;
    Ok(quiet && messages_on(cs, rid, caps)?.is_none() && messages_on(cs, rid, booted)?.is_none())
}

/// After a reset that answered: whether a BAR the owner placed (`plan`, or for a function
/// whose BARs were never placed `saved`, read before step 1; an address other than 0
/// above the type bits) still reads as placed. Any reset returns BARs to 0 (PCIe Base
/// 4.0, 6.6.2; PCI Bus Power Management 1.2, 5.4.1, D0 uninitialized), so one that kept
/// its placement did not reset: a PMCSR No_Soft_Reset that lies (Linux's
/// `quirk_no_pm_reset`), or an FLR it ignores. A function with no placed BAR shows
/// nothing either way.
fn kept_placement(
    cs: &mut dyn ConfigSpace,
    rid: u16,
    saved: &[u32; SAVED.len()],
    plan: Option<&BarPlan>,
) -> Result<bool, ErrorCode> {
    if let Some(plan) = plan {
        return plan.any_kept(cs, rid);
    }
    for (&v, &(off, width)) in saved.iter().zip(&SAVED).take(6) {
        if v & !0xf != 0 && read(cs, rid, off, width)? == v {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Function `rid` stopped answering (a reset it did not come back from within the second
/// `stop_function` waits, `FLR_LOST`, or a call that found nothing there) and may have
/// come back since, its registers at their reset values: its BARs at 0 or wherever reset
/// leaves them, outside every window the owner gave out, where it would decode once its
/// driver turned Memory Space on. Before anything else touches it: it must answer (its
/// Vendor ID neither all ones nor Retry Status's 0x0001), is made to master and decode
/// nothing (Bus Master, Memory and I/O Space off, MSI and MSI-X disabled), and its
/// BARs are placed again where the description places them (`ConfigSpace::placement`,
/// the plan boot made, ROM disabled), read back. `DeviceMissing` if it does not answer,
/// or if its BARs cannot be put there (no longer fitting the window, or not reading
/// back: then not the function the owner placed, and its decoding stays off). Otherwise
/// whether it then reads back off, as a stop's `FUNCTION_OFF` says (an MSI or MSI-X
/// Enable it keeps set does not).
pub fn restore_function(cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
    let missing = ErrorCode::DeviceMissing;
    if !answering(cs, rid)? {
        return Err(missing);
    }
    if read(cs, rid, reg::HEADER_TYPE, 1)? & 0x7f != 0 {
        return Err(missing);
    }
    let command = read(cs, rid, reg::COMMAND, 2)? as u16;
    let quiet = command & !(reg::CMD_DRIVER | CMD_IO_SPACE) | reg::CMD_INTX_DISABLE;
    cs.write(rid, reg::COMMAND, 2, u32::from(quiet)).ok_or(ErrorCode::NoConfigSpace)?;
    let mut caps = [Cap::default(); MAX_CAPS];
    let n = capabilities(cs, rid, &mut caps)?;
    let (booted, m) = cs.recorded(rid).map(|r| r.caps).unwrap_or_default().messages();
    messages_off(cs, rid, &caps[..n])?;
    messages_off(cs, rid, &booted[..m])?;
    place_again(cs, rid)?;
    if cs.placement(rid).is_some() {
        decode(cs, rid).ok_or(ErrorCode::NoConfigSpace)?;
    }
    silent(cs, rid, &caps[..n], &booted[..m])
}

/// After a reset: whether the function answers configuration requests again within
/// `RETURN_WAIT_MS` (its Vendor ID neither all ones nor Retry Status's 0x0001).
fn answers(cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
    let mut waited = 0;
    loop {
        if answering(cs, rid)? {
            return Ok(true);
        }
        if waited >= RETURN_WAIT_MS {
            return Ok(false);
        }
        cs.wait_ms(POLL_MS);
        waited += POLL_MS;
    }
}

/// Whether the function answers a configuration request now: its Vendor ID neither all
/// ones (nothing there) nor Retry Status's 0x0001 (still resetting).
fn answering(cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
    let vendor = read(cs, rid, reg::VENDOR_ID, 2)?;
    Ok(vendor != 0xffff && vendor != VENDOR_CRS)
}

/// Where the capabilities a stop needs start (0: none; no capability starts below 0x40),
/// as the owner records them at boot (`super::record`) and as a stop finds them then: a
/// stop uses both, so a function that unlists its MSI, MSI-X, FLR or PM at its stop is
/// stopped with them all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootCaps {
    msi: u16,
    msix: u16,
    /// The PCI Express capability, if its Device Capabilities advertise FLR.
    flr: u16,
    /// The PM capability, if a D3hot-to-D0 transition resets the function (PMCSR's
    /// No_Soft_Reset clear).
    pm_reset: u16,
    /// The Advanced Features capability, if it advertises FLR and Transactions Pending
    /// (Linux's `pci_af_flr` asks for both).
    af_flr: u16,
}

impl BootCaps {
    /// From function `rid`'s capability list `caps`, as it reads now.
    pub(super) fn of(cs: &mut dyn ConfigSpace, rid: u16, caps: &[Cap]) -> Result<BootCaps, ErrorCode> {
        let start = |id: u8| caps.iter().find(|c| c.id == id).map_or(0, |c| c.start);
        let mut found =
            BootCaps { msi: start(reg::CAP_MSI), msix: start(reg::CAP_MSIX), flr: 0, pm_reset: 0, af_flr: 0 };
        let exp = start(reg::CAP_EXP);
        if exp != 0 && read(cs, rid, exp + EXP_DEVCAP, 4)? & DEVCAP_FLR != 0 {
            found.flr = exp;
        }
        // Whatever power state it reads: writing D3hot and then D0 resets it from either.
        let pm = start(reg::CAP_PM);
        if pm != 0 && read(cs, rid, pm + PM_CSR, 2)? as u16 & PM_NO_SOFT_RESET == 0 {
            found.pm_reset = pm;
        }
        let af = start(CAP_AF);
        let both = AF_CAP_TP | AF_CAP_FLR;
        if af != 0 && read(cs, rid, af + AF_CAP, 1)? as u8 & both == both {
            found.af_flr = af;
        }
        Ok(found)
    }

    /// Whether `c` is the MSI or MSI-X capability recorded here (a function has at most
    /// one of each, PCI Local Bus 3.0, 6.8; a second is not the driver's: `super::record`).
    pub(super) fn is_message(self, c: &Cap) -> bool {
        match c.id {
            reg::CAP_MSI => c.start == self.msi,
            reg::CAP_MSIX => c.start == self.msix,
            _ => false,
        }
    }

    /// Its MSI and MSI-X capabilities, as `messages_off` and `messages_on` take them (the
    /// first `n`).
    fn messages(self) -> ([Cap; 2], usize) {
        let mut caps = [Cap::default(); 2];
        let mut n = 0;
        for (start, id) in [(self.msi, reg::CAP_MSI), (self.msix, reg::CAP_MSIX)] {
            if start != 0 {
                caps[n] = Cap { start, end: start + 4, id };
                n += 1;
            }
        }
        (caps, n)
    }

    fn flr(self) -> Option<u16> {
        (self.flr != 0).then_some(self.flr)
    }

    fn pm_reset(self) -> Option<u16> {
        (self.pm_reset != 0).then_some(self.pm_reset)
    }

    fn af_flr(self) -> Option<u16> {
        (self.af_flr != 0).then_some(self.af_flr)
    }
}

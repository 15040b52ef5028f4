//! A hostile driver PD: it asks the IOMMU PD for memory it holds no capability for, tries
//! to move another driver's device's BAR, stop its bus mastering and read its
//! configuration space (and to move its own BAR onto the victim's), points its device's
//! DMA at addresses it was never given, floods the SMMU with faults, and crashes. It must be refused or contained while the rest of the system keeps working.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use client_channel::Ppc;
use iommu_client::Client;
use iommu_protocol::config::reg;
use iommu_protocol::faults::{FaultRecord, FaultRing};
use iommu_protocol::{ClientId, DeviceId, Handle, Rights};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, Channel, Handler, Infallible};

const IOMMU: Channel = Channel::new(0);
/// Where the IOMMU PD puts its edu's BAR0 (the second MiB of the PCI memory window), and
/// the edu driver's (the first), which it would like to reach through its own mapping.
const BAR0: u32 = 0x1010_0000;
const VICTIM_BAR0: u32 = 0x1000_0000;
const POLLS: u32 = 200_000_000;
/// Its device in the policy (edu_a is 0, its own is 1).
const MY_DEVICE: DeviceId = DeviceId(1);
const OTHER_DEVICE: DeviceId = DeviceId(0);
/// The label of the request sent, not called: no operation, so the IOMMU PD refuses and
/// logs it, and no call of this driver's has it.
const SENT_NOT_CALLED: u64 = 0x5e4d;

#[protection_domain]
fn init() -> Hostile {
    let bar: NonNull<u8> = memory_region_symbol!(edu_bar: *mut u8);
    let mut iommu = Client::new(Ppc(IOMMU));

    // A send instead of a call, which the endpoint capability of any `pp` end allows. It
    // lends the IOMMU PD no scheduling context: a passive IOMMU PD would take it with none
    // and never run again (seL4's MCS `sendIPC`), so `iommu-sdf check` refuses a passive
    // one unless the description trusts its callers never to send. This one is not
    // passive: it refuses the request, and logs it under this label, which no call here
    // uses (so the image sees that the send reached it; its answer goes nowhere: no caller
    // waits for it), and then serves the calls below, whose answers show it still runs.
    IOMMU.endpoint().send(sel4::MessageInfo::new(SENT_NOT_CALLED, 0, 0, 0));
    debug_println!(
        "hostile: sends the IOMMU PD a request (label {SENT_NOT_CALLED:#x}) instead of calling it (seL4_Send)"
    );

    // Configuration space is the IOMMU PD's, and it maps no ECAM here. What it tries
    // through the calls, each of which must be refused with nothing written: move the edu
    // driver's device's BAR into its own window (where it could drive that device's DMA
    // engine inside the victim's SMMU domain), stop that device's bus mastering, read its
    // configuration, stop it, and move its own BAR onto the victim's.
    let r = iommu.config_write(OTHER_DEVICE, reg::BAR0, 4, BAR0);
    debug_println!("hostile: CONFIG_WRITE moving edu_a's BAR0 into its own window: {r:x?}");
    let r = iommu.config_write(OTHER_DEVICE, reg::COMMAND, 2, u32::from(reg::CMD_MEMORY));
    debug_println!("hostile: CONFIG_WRITE clearing edu_a's bus master: {r:x?}");
    let r = iommu.config_read(OTHER_DEVICE, reg::VENDOR_ID, 4);
    debug_println!("hostile: CONFIG_READ of edu_a's function: {r:x?}");
    // STOP of it would block it and reset its function under its driver.
    let r = iommu.stop(OTHER_DEVICE);
    debug_println!("hostile: STOP of edu_a (which would block it and reset its function): {r:x?}");
    let r = iommu.config_write(MY_DEVICE, reg::BAR0, 4, VICTIM_BAR0);
    debug_println!("hostile: CONFIG_WRITE moving its own BAR0 onto edu_a's: {r:x?}");
    let r = iommu.config_write(MY_DEVICE, reg::CAP_PTR, 1, 0);
    debug_println!("hostile: CONFIG_WRITE of its own capability pointer: {r:x?}");
    // Its own device, as any driver turns it on; its BAR stayed where the IOMMU PD put it.
    let bar0 = iommu.config_read(MY_DEVICE, reg::BAR0, 4);
    let on = iommu.config_write(MY_DEVICE, reg::COMMAND, 2, u32::from(reg::CMD_MEMORY | reg::CMD_BUS_MASTER));
    debug_println!("hostile: its own BAR0 reads {bar0:x?}; memory and bus master on: {on:x?}");
    // SAFETY: BAR0 is at the range the description maps here (read back just above).
    let mut edu = unsafe { edu::Edu::new(bar) };

    // Timed: the IOMMU PD logs this refusal (within its budget of lines), which the
    // flood below is mostly not; the two times are what a logged line costs.
    let start = generic_timer::ticks();
    let r = iommu.map(Handle(3), MY_DEVICE, 0, 0x1000, None, Rights::READ_WRITE);
    let us = (generic_timer::ticks() - start) * 1_000_000 / generic_timer::hz().max(1);
    debug_println!("hostile: MAP with a handle it was never given: {r:?} ({us} us, logged by the IOMMU PD)");
    let r = iommu.map(Handle(0), OTHER_DEVICE, 0, 0x1000, None, Rights::READ_WRITE);
    debug_println!("hostile: MAP for another driver's device: {r:?}");
    let r = iommu.map(Handle(0), MY_DEVICE, 0x1000, 0x10_0000, None, Rights::READ_WRITE);
    debug_println!("hostile: MAP past the end of its capability: {r:?}");
    let r = iommu.measure_bypass(MY_DEVICE, true);
    debug_println!("hostile: asks for its device in bypass: {r:?}");
    // Nor how long the IOMMU PD's wake-ups take (queue-fair's measurement): it would tell a
    // client how long others keep the IOMMU PD busy.
    let r = iommu.measure_wake_up();
    debug_println!("hostile: asks how long the IOMMU PD's wake-ups took: {r:?}");
    // Lending its scratch page to the edu driver's device would widen what that device
    // reaches; the description lets this capability go to no one.
    let r = iommu.grant(Handle(0), ClientId(0), 0, 0x1000, Rights::READ, 1 << OTHER_DEVICE.0);
    debug_println!("hostile: GRANT of its scratch page to the edu driver: {r:?}");
    // RELEASE is for what a client was lent; what the description gives stays.
    let r = iommu.release(Handle(0));
    debug_println!("hostile: RELEASE of the capability the description gave it: {r:?}");

    // A flood of refused requests, as a driver in a retry loop sends: the IOMMU PD logs
    // the first few and counts the rest, so the flood costs it (and every other client
    // waiting for it) little more than the refusals themselves (it has used up most of
    // its budget of lines on the refusals above).
    let (refused, us) = timed(FLOOD, || iommu.map(Handle(3), MY_DEVICE, 0, 0x1000, None, Rights::READ_WRITE).is_err());
    debug_println!(
        "hostile: a flood of {FLOOD} MAPs with a handle it was never given: {refused} refused, in {us} us ({} us each)",
        us / FLOOD
    );

    // A flood of STOPs of its own device, as a driver in a loop sends (its device has no
    // reset to ration, so each STOP is cheap): the IOMMU PD reports the first few and
    // counts the rest, so the flood costs it little more than the STOPs themselves. Its
    // device then runs again, as any driver turns it on.
    let (confirmed, us) = timed(STOPS, || iommu.stop(MY_DEVICE).is_ok());
    debug_println!(
        "hostile: a flood of {STOPS} STOPs of its own device: {confirmed} confirmed, in {us} us ({} us each)",
        us / STOPS
    );
    let resumed = iommu.resume(MY_DEVICE);
    let on = iommu.config_write(MY_DEVICE, reg::COMMAND, 2, u32::from(reg::CMD_MEMORY | reg::CMD_BUS_MASTER));
    debug_println!("hostile: RESUME of its own device: {resumed:?}; memory and bus master on again: {on:x?}");

    // Its device faults one word at a time, far under its storm limit: each DMA, which
    // QEMU's edu runs 100 ms after it is started, is one fault record and one wake-up of
    // the IOMMU PD, which prints a sample of them within the client's budget of lines for
    // faults (8 at once, then one a second): over these two seconds, 9 lines or so, the
    // later ones saying how many were not printed. The IOVAs go down two pages at a time
    // (nothing is mapped there), so that no record folds into the one before it.
    for i in 0..SINGLE_FAULTS {
        let _ = edu.dma_to_ram(0, SINGLE_FAULTS_AT + (SINGLE_FAULTS - i) * 0x2000, 4, POLLS);
    }
    debug_println!("hostile: {SINGLE_FAULTS} single faults, one DMA at a time, under its storm limit");

    // Its own scratch page is mapped (read-only); everything else its device tries is
    // blocked. It writes over the scratch page and the pages after it, one 256-byte DMA
    // (64 faults) at a time, and goes on after each word from the IOMMU PD until it is
    // told its device is quarantined: the flood lasts as long as the storm takes to be
    // seen, however fast the host emulates, and no longer than MAX_BURSTS.
    let scratch = iommu.map(Handle(0), MY_DEVICE, 0, 0x1000, None, Rights::READ);
    debug_println!("hostile: MAP of its own scratch page: {scratch:x?}");
    if let Ok(iova) = scratch {
        let _ = edu.dma_from_ram(iova, 0, 256, POLLS);
    }
    let mut hostile = Hostile { edu, bursts: 0 };
    hostile.burst();
    hostile
}

/// Refused requests in the flood.
const FLOOD: u64 = 1000;

/// `n` calls of `call`: how many answered as the flood meant (`call` says), and in how
/// many us.
fn timed(n: u64, mut call: impl FnMut() -> bool) -> (u64, u64) {
    let start = generic_timer::ticks();
    let counted = (0..n).filter(|_| call()).count();
    let ticks = generic_timer::ticks() - start;
    (counted as u64, ticks * 1_000_000 / generic_timer::hz().max(1))
}

/// Single faults before the flood of them: more than the IOMMU PD's burst of fault lines
/// (8), at QEMU's edu's pace (ten a second) about two seconds' worth.
const SINGLE_FAULTS: u64 = 20;
/// Below where they go (unmapped, past the flood's 16 pages at 0x1_0000_0000).
const SINGLE_FAULTS_AT: u64 = 0x1_0010_0000;

/// STOPs in the flood of them.
const STOPS: u64 = 100;

/// Bursts of faults the flood may take before the test gives up on a quarantine: at the
/// storm limit under test (300 in a second), five bursts within a second are enough.
const MAX_BURSTS: u64 = 64;

struct Hostile {
    edu: edu::Edu,
    bursts: u64,
}

impl Hostile {
    /// One more DMA at a page its device may not write, or false when the flood is over.
    fn burst(&mut self) -> bool {
        if self.bursts == MAX_BURSTS {
            return false;
        }
        let iova = 0x1_0000_0000 + (self.bursts % 16) * 0x1000;
        let _ = self.edu.dma_to_ram(0, iova, 256, POLLS);
        self.bursts += 1;
        true
    }
}

impl Handler for Hostile {
    type Error = Infallible;

    fn notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), Self::Error> {
        if !channels.contains(IOMMU) {
            return Ok(());
        }
        let ring: NonNull<FaultRing> = memory_region_symbol!(fault_ring: *mut FaultRing);
        let mut out = [FaultRecord::default(); 8];
        let mut quarantined = false;
        // Every record published so far, in rounds of `out.len()`.
        loop {
            // SAFETY: the description maps this PD's fault ring here, read-only.
            let n = unsafe { client_channel::take_faults(ring, IOMMU, &mut out) };
            for r in &out[..n] {
                quarantined |= r.quarantined == 1;
                if client_channel::told_notice("hostile", r) {
                    continue;
                }
                debug_println!(
                    "hostile: told: stream {:#x} write at iova {:#x}..={:#x} ({} more){}",
                    r.stream,
                    r.iova,
                    r.iova_last,
                    r.repeats,
                    if r.quarantined == 1 { "; device QUARANTINED" } else { "" }
                );
            }
            if n < out.len() {
                break;
            }
        }
        // SAFETY: the description maps this PD's fault ring here, read-only.
        if unsafe { client_channel::told_service_failed("hostile", ring) } {
            // Nothing is served any more: no burst, no RESUME.
            return Ok(());
        }
        if !quarantined {
            if !self.burst() {
                debug_println!("hostile: {MAX_BURSTS} bursts of faults and still not quarantined");
            }
            return Ok(());
        }
        debug_println!("hostile: quarantined after {} bursts of faults", self.bursts);
        let r = Client::new(Ppc(IOMMU)).resume(MY_DEVICE);
        debug_println!("hostile: asks to resume its quarantined device: {r:?}");
        // Last, it crashes, as a compromised driver might: the IOMMU PD, its fault
        // handler, must take its DMA away. By a fault of its own making: Microkit leaves
        // each PD its fault endpoint (slot 2 of its CSpace), so a PD can send its parent a
        // "VM fault" of no registers at all, which rust-sel4's fault decoder asserts
        // against and once panicked the IOMMU PD (`place::FaultKind::of`). The C driver's
        // crash is a trap (a debug exception), the VMMs' stores to unmapped addresses.
        debug_println!("hostile: crashes (a VM fault it forges, with no registers)");
        let own_fault_endpoint = sel4::cap::Endpoint::from_bits(2);
        own_fault_endpoint.call(sel4::MessageInfo::new(sel4::sys::seL4_Fault_tag::seL4_Fault_VMFault, 0, 0, 0));
        debug_println!("hostile: its forged fault was answered: it should have been torn down");
        Ok(())
    }
}

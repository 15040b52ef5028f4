//! A client's lifecycle: teardown when it faults or restarts (its devices blocked and
//! emptied, confirmed, its mapping queue started over, its PCI functions stopped), and
//! its return; and STOP, the same for one device on request.

use super::*;
use crate::pci::Reset;

impl<'a, H: IommuHw> Service<'a, H> {
    /// `client` faulted or is being restarted: block its devices and remove all their
    /// mappings, every device, whatever the IOMMU answers for one, and revoke every grant
    /// it made (another client's device loses what this one lent it). The capabilities it
    /// holds stay; `client_ready` lets its devices run again. `Ok` once every device is blocked,
    /// confirmed (removals the IOMMU did not confirm stay pending, and `client_ready`
    /// retries them); `Hardware` if a device could not be blocked: its mappings are
    /// removed all the same (what is confirmed gone, it cannot reach even unblocked),
    /// and its block is retried before any request is served (`retry_blocks`).
    pub fn client_torn_down(&mut self, client: usize) -> Result<()> {
        let mut result = Ok(());
        // What it posted to its mapping queue died with it: a restarted client starts its
        // queue from the beginning (the PD shell publishes `queue_cursor`).
        if let Some(c) = self.clients.get_mut(client) {
            c.queue = Default::default();
        }
        for d in 0..self.cfg.devices.len() {
            if self.cfg.devices[d].owner != client {
                continue;
            }
            // One device the IOMMU will not block must not leave the client's others
            // running: go on to them.
            if self.hw.block(d).is_err() {
                self.block_failed(d);
                result = Err(ErrorCode::Hardware);
            }
            self.devices[d].set_blocked(Blocks::TORN_DOWN, true);
            // A removal that is not confirmed stays pending, its device blocked (or
            // marked for a retry of the block), and is retried before the device runs.
            let _ = self.remove_where(d, |_| true);
        }
        // What it lent was its run's promise, and its restarted program, which knows
        // nothing of it, may put other data in those pages: the borrowers' devices lose
        // them, confirmed (or pending, those devices blocked, as after a failed REVOKE).
        // Every grant's subtree is marked first, so that each borrower's device is walked
        // once for all of them, not once per grant.
        let handles = self.clients.get(client).map_or(0, |c| c.handles.len());
        let (mut devices, mut granted) = (0, false);
        for h in 0..handles {
            if let Some(Slot::Grant(g)) = self.clients[client].handles[h] {
                devices |= self.mark_going(g);
                granted = true;
            }
        }
        if granted {
            if self.remove_marked(devices).is_err() {
                result = Err(ErrorCode::Hardware);
            }
            // (A grant inside another's subtree went with it, its handle too.)
            for h in 0..handles {
                if let Some(Slot::Grant(g)) = self.clients[client].handles[h] {
                    self.drop_subtree(g);
                }
            }
        }
        result
    }

    /// `client_torn_down`, and then each of its devices that is a PCI function of `pci`
    /// stopped there (`crate::pci::stop_function`: Bus Master off, a Function Level
    /// Reset where it has one, the owner's BARs written back), whatever the IOMMU
    /// answered; `said(device, what was done)` for each device of the client.
    pub fn client_torn_down_with(
        &mut self,
        client: usize,
        pci: &mut dyn ConfigSpace,
        mut said: impl FnMut(DeviceIndex, Stopped),
    ) -> Result<()> {
        let result = self.client_torn_down(client);
        for d in 0..self.cfg.devices.len() {
            if self.cfg.devices[d].owner == client {
                // Not rationed: a client's teardowns are bounded by its restarts.
                said(d, self.stop_function_of(client, d, pci, Ration::Waived));
            }
        }
        result
    }

    /// Device `d`'s PCI function stopped, if it is one of `pci`'s (nothing done, 0, if it
    /// is not, or if it does not answer), and reset where it has FLR unless `ration` is
    /// kept and does not allow `client` one yet (then the reset is owed: RESUME does it).
    pub(super) fn stop_function_of(
        &mut self,
        client: usize,
        d: DeviceIndex,
        pci: &mut dyn ConfigSpace,
        ration: Ration,
    ) -> Stopped {
        let Ok(rid) = pci.function(d) else { return Stopped::default() };
        // One that stopped answering is put back first, so that what the stop saves and
        // writes back is the owner's placement; still not answering, nothing is done, and
        // nothing was read off (`stop_answered`).
        if self.recover_function(d, pci).is_err() {
            self.devices[d].master_kept_off = Some(true);
            // Nothing was done to it, so all of it is owed: RESUME puts it back, then
            // stops and resets it, before it runs again.
            self.devices[d].reset_owed = true;
            return Stopped::default();
        }
        let reset = match ration {
            Ration::Kept if !self.may_reset(client, pci) => Reset::Owed,
            _ => Reset::Now,
        };
        let start = pci.now_ms();
        let result = crate::pci::stop_function(pci, rid, reset);
        let undone = result.is_err();
        let done = self.stop_answered(d, result).unwrap_or_default();
        self.reset_done(client, start, done, pci);
        self.lost_if_not_back(d, done);
        // A teardown's reset (or a later STOP's) settles what an earlier STOP left owed; a
        // stop that could do nothing (nothing answered) owes it all, as above.
        self.devices[d].reset_owed = done.reset_owed() || undone;
        done
    }

    /// RESUME of stopped device `d` whose function owes its reset: the reset, if the
    /// ration allows it now and it is `client`'s turn (`ResetRationed` if not, and
    /// nothing done).
    pub(super) fn pay_owed_reset(&mut self, client: usize, d: DeviceIndex, pci: &mut dyn ConfigSpace) -> Result<()> {
        if !self.may_reset(client, pci) {
            return Err(ErrorCode::ResetRationed);
        }
        let rid = pci.function(d)?;
        let start = pci.now_ms();
        let done = self.stop_answered(d, crate::pci::stop_function(pci, rid, Reset::Now))?;
        self.reset_done(client, start, done, pci);
        self.devices[d].reset_owed = false;
        // Not back from it: RESUME waits until it is, and is put back (`recover_function`).
        if self.lost_if_not_back(d, done) {
            return Err(ErrorCode::DeviceMissing);
        }
        Ok(())
    }

    /// Device `d`'s function, if it stopped answering (`DeviceState::function_lost`),
    /// found answering again and put back where the description places it
    /// (`crate::pci::restore_function`: its BARs placed again, decoding, Bus Master and
    /// messages off) before anything else touches it: its reset values are outside every
    /// window the owner gave out. `DeviceMissing` while it does not answer (or cannot be
    /// put back), and it stays lost. What it reads back sets its Bus Master's fate as a
    /// stop's does (`stop_answered`): a stop that found it away read nothing off, and it
    /// may master again once this reads it off, not before.
    pub(super) fn recover_function(&mut self, d: DeviceIndex, pci: &mut dyn ConfigSpace) -> Result<()> {
        if !self.devices[d].function_lost {
            return Ok(());
        }
        let rid = pci.function(d)?;
        let off = crate::pci::restore_function(pci, rid)?;
        self.devices[d].function_lost = false;
        self.devices[d].master_kept_off = Some(!off);
        Ok(())
    }

    /// Device `d`'s function (at `rid`, answering, not lost) with what the owner keeps on
    /// between calls put back if a reset of its own cleared it (`crate::pci::keep_owned`:
    /// its BARs where the description places them and decoding, Interrupt Disable where
    /// its driver's PD does not hold its line); whether anything was. `DeviceMissing`
    /// marks it lost, as any call that finds it gone does.
    pub(super) fn keep_function_owned(&mut self, d: DeviceIndex, rid: u16, pci: &mut dyn ConfigSpace) -> Result<bool> {
        let bus_master = self.bus_master(d, rid, pci);
        let kept = crate::pci::keep_owned(pci, rid, bus_master);
        self.lost_if_missing(d, kept)
    }

    /// Whether device `d`'s function (at `rid`) may master: not while its MSI or MSI-X
    /// Enable stayed set at boot and no stop has read it off since, or its last stop did
    /// not read back off (`master_kept_off`).
    pub(super) fn bus_master(&self, d: DeviceIndex, rid: u16, pci: &dyn ConfigSpace) -> crate::pci::BusMaster {
        match self.devices[d].master_kept_off.unwrap_or_else(|| pci.messages_stuck(rid)) {
            true => crate::pci::BusMaster::KeptOff,
            false => crate::pci::BusMaster::Allowed,
        }
    }

    /// Every described function that is not lost checked as its driver's configuration
    /// calls check it (`keep_function_owned`), whether or not its driver calls: a driver
    /// that resets its device through a device register and then loads from its BAR makes
    /// no configuration call first. The PD shell calls this when it is woken by the SMMU
    /// or its timer. `put_back(device)` for each function that had something put back.
    pub fn keep_functions_owned(&mut self, pci: &mut dyn ConfigSpace, mut put_back: impl FnMut(DeviceIndex)) {
        for d in 0..self.cfg.devices.len() {
            if self.devices[d].function_lost {
                continue;
            }
            let Ok(rid) = pci.function(d) else { continue };
            if self.keep_function_owned(d, rid, pci) == Ok(true) {
                put_back(d);
            }
        }
    }

    /// `result` of a stop of device `d`'s function (`lost_if_missing`). One that did not
    /// read back off (no `FUNCTION_OFF`: an MSI or MSI-X Enable, or Command, stayed set;
    /// or it failed, nothing answering: the function may come back with its enable still
    /// set) keeps its Bus Master off, whatever its driver writes, until a later stop reads
    /// it off: mastering, it would send the message its last driver (or guest) set up, in
    /// its next owner's address space.
    fn stop_answered(&mut self, d: DeviceIndex, result: Result<Stopped>) -> Result<Stopped> {
        let result = self.lost_if_missing(d, result);
        self.devices[d].master_kept_off = Some(!result.is_ok_and(|done| done.off()));
        result
    }

    /// `result` of a call on device `d`'s function, which is marked lost if nothing
    /// answered.
    pub(super) fn lost_if_missing<T>(&mut self, d: DeviceIndex, result: Result<T>) -> Result<T> {
        if matches!(result, Err(ErrorCode::DeviceMissing)) {
            self.devices[d].function_lost = true;
        }
        result
    }

    /// A stop of device `d`'s function whose reset it did not come back from in time
    /// (`FLR_LOST`) marks it lost; whether it did.
    fn lost_if_not_back(&mut self, d: DeviceIndex, done: Stopped) -> bool {
        let lost = done.lost();
        self.devices[d].function_lost |= lost;
        lost
    }

    /// STOP: `device` is blocked, confirmed, and loses every mapping, its static ones too
    /// (for a device passed through to a virtual machine, the guest's memory). `Ok` once
    /// the IOMMU confirmed every removal, earlier pending ones included; `Hardware` if it
    /// did not (the device stays blocked, and RESUME or another STOP retries).
    pub(super) fn stop(&mut self, client: usize, device: DeviceId) -> Result<()> {
        let d = self.own_device(client, device)?;
        self.hw.block(d).map_err(|_| ErrorCode::Hardware)?;
        self.devices[d].set_blocked(Blocks::STOPPED, true);
        self.remove_where(d, |_| true)?;
        // Removals an earlier request could not confirm are retried too (the device stays
        // blocked: it is stopped).
        self.settle(d)
    }

    /// `client` is running again: its devices (unless quarantined) translate again,
    /// through empty address spaces, once every removal pending on them is confirmed.
    pub fn client_ready(&mut self, client: usize) -> Result<()> {
        for d in 0..self.cfg.devices.len() {
            if self.cfg.devices[d].owner == client && self.devices[d].torn_down() {
                // A restarted client finds its devices as the description has them, but
                // one whose function its teardown could not stop (away then) or reset
                // stays stopped: back, it would master as its last client left it, in
                // this one's address space. RESUME puts it back and resets it first.
                let owed = self.devices[d].reset_owed;
                self.devices[d].set_blocked(Blocks::STOPPED, owed);
                self.settle(d)?;
                // Its static maps while it is still blocked, as RESUME makes them: should
                // one fail, the device stays torn down, and aborting.
                self.make_static_maps(d)?;
                if !self.devices[d].quarantined() && !owed {
                    self.enable_or_block(d)?;
                }
                // Only now: if anything above failed, the device is still torn down and
                // the next `client_ready` does it all again.
                self.devices[d].set_blocked(Blocks::TORN_DOWN, false);
            }
        }
        Ok(())
    }

    /// Mappings of `client`'s devices whose removal the IOMMU has not confirmed.
    pub fn pending_removals(&self, client: usize) -> usize {
        (0..self.cfg.devices.len())
            .filter(|d| self.cfg.devices[*d].owner == client)
            .map(|d| self.devices[d].pending as usize)
            .sum()
    }
}

/// Whether a function reset keeps its client's ration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ration {
    /// STOP, which a client may send as often as it likes (`reset_ration`).
    Kept,
    /// A teardown, which happens once for each of the client's faults (and a client is
    /// restarted a bounded number of times).
    Waived,
}

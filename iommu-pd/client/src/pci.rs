//! virtio-drivers' PCI configuration access over CONFIG_READ and CONFIG_WRITE: the
//! driver's own function, as the IOMMU PD lets it see it, for `PciRoot` and
//! `PciTransport`, which otherwise want ECAM mapped.
//!
//! virtio-drivers sizes a BAR by writing all ones and reading it back; the IOMMU PD does
//! that probe whole within the write and answers the size mask, which the next read of
//! that register returns here (then the driver writes the old value back, which changes
//! nothing).
//!
//! `ConfigurationAccess` cannot fail, so this reads as a real bus does where there is
//! nothing: another function, or a refused read, is all ones (virtio-drivers then finds
//! no device there); a refused write changes nothing, as the service guarantees, and is
//! kept for the driver to ask about (`last_refusal`).

use core::cell::Cell;

use iommu_protocol::{DeviceId, ErrorCode};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

use crate::{Channel, Client};

/// One function's configuration space, through the IOMMU PD.
#[derive(Debug, Clone)]
pub struct OwnFunction<C: Channel + Clone> {
    channel: C,
    device: DeviceId,
    function: DeviceFunction,
    refused: Cell<Option<ErrorCode>>,
    /// The last write's register and what it read back, for the read that follows it.
    written: Cell<Option<(u8, u32)>>,
}

impl<C: Channel + Clone> OwnFunction<C> {
    /// `device` (the caller's, by its index in the description), which virtio-drivers
    /// will address as `function` (its bus, device and function numbers).
    pub fn new(channel: C, device: DeviceId, function: DeviceFunction) -> Self {
        Self { channel, device, function, refused: Cell::new(None), written: Cell::new(None) }
    }

    /// The last refusal of a read or write, if any, and forget it.
    pub fn last_refusal(&self) -> Option<ErrorCode> {
        self.refused.take()
    }
}

impl<C: Channel + Clone> ConfigurationAccess for OwnFunction<C> {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        if device_function != self.function {
            return u32::MAX;
        }
        if let Some((offset, value)) = self.written.take() {
            if offset == register_offset {
                return value;
            }
        }
        let r = Client::new(self.channel.clone()).config_read(self.device, u16::from(register_offset), 4);
        r.unwrap_or_else(|e| {
            self.refused.set(Some(e));
            u32::MAX
        })
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        if device_function != self.function {
            self.refused.set(Some(ErrorCode::BadDevice));
            return;
        }
        match Client::new(self.channel.clone()).config_write(self.device, u16::from(register_offset), 4, data) {
            Ok(after) => self.written.set(Some((register_offset, after))),
            Err(e) => self.refused.set(Some(e)),
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        // Every access goes through the IOMMU PD, which serves one call at a time: a
        // clone shares nothing that could race.
        self.clone()
    }
}

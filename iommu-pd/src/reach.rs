//! Which devices a capability can ever be mapped for: the one rule GRANT enforces at run
//! time and `iommu-sdf report` prints before the system runs.
//!
//! A capability from the description (a root) is held by one client, for some of its
//! devices, and may be lent, by GRANT, and onwards by whoever received it, to the clients
//! its `grant_to` lists. Anything derived from it may therefore be mapped for:
//! - the root holder's devices that the root names, and no other of the holder's devices,
//!   even if the holder is in `grant_to` or the capability comes back to it by a round
//!   trip (a holder may not widen its own capability to its other devices);
//! - any device of a client in `grant_to` other than the holder.
//!
//! Sets are generic so that the service (bit masks of indices) and the tool (names from
//! the description) apply the same function.

/// A set the rule can ask about.
pub trait Contains<T: ?Sized> {
    /// True if `x` is in the set.
    fn has(&self, x: &T) -> bool;
}

/// Bit `i` set means index `i` is in the set.
impl Contains<usize> for u64 {
    fn has(&self, x: &usize) -> bool {
        *x < 64 && self & (1 << x) != 0
    }
}

impl<S: AsRef<str>> Contains<str> for [S] {
    fn has(&self, x: &str) -> bool {
        self.iter().any(|s| s.as_ref() == x)
    }
}

/// A root capability, as far as the rule cares.
#[derive(Debug)]
pub struct Root<'a, C: ?Sized, DS: ?Sized, CS: ?Sized> {
    /// The client that holds it from boot.
    pub holder: &'a C,
    /// The devices the description names for it.
    pub devices: &'a DS,
    /// The clients it may be lent to.
    pub grant_to: &'a CS,
}

// By hand: a derive would ask the sets themselves to be `Copy`.
impl<C: ?Sized, DS: ?Sized, CS: ?Sized> Clone for Root<'_, C, DS, CS> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C: ?Sized, DS: ?Sized, CS: ?Sized> Copy for Root<'_, C, DS, CS> {}

/// May `device`, owned by client `owner`, be given memory of a capability derived from
/// `root`?
pub fn may_reach<C, D, DS, CS>(root: Root<'_, C, DS, CS>, owner: &C, device: &D) -> bool
where
    C: PartialEq + ?Sized,
    D: ?Sized,
    DS: Contains<D> + ?Sized,
    CS: Contains<C> + ?Sized,
{
    if owner == root.holder {
        root.devices.has(device)
    } else {
        root.grant_to.has(owner)
    }
}

/// The devices (as a mask) among `owned`, the devices client `owner` owns, that a
/// capability derived from `root` may be mapped for.
pub fn devices_for(holder: usize, devices: u64, grant_to: u64, owner: usize, owned: u64) -> u64 {
    let root = Root { holder: &holder, devices: &devices, grant_to: &grant_to };
    (0..64usize).filter(|d| owned.has(d) && may_reach(root, &owner, d)).fold(0, |m, d| m | 1 << d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_keeps_to_the_devices_it_was_given() {
        // Client 0 owns devices 0 and 1; the root is for device 0 and lendable to 0 and 1.
        assert_eq!(devices_for(0, 0b01, 0b11, 0, 0b011), 0b01);
        // Client 1 (listed) may use any of its own devices; client 2 (not listed) none.
        assert_eq!(devices_for(0, 0b01, 0b11, 1, 0b100), 0b100);
        assert_eq!(devices_for(0, 0b01, 0b11, 2, 0b1000), 0);
    }

    #[test]
    fn names_follow_the_same_rule() {
        let devices = ["blk0"];
        let grant_to = ["blk_driver", "net_driver"];
        let root = Root { holder: "blk_driver", devices: &devices[..], grant_to: &grant_to[..] };
        assert!(may_reach(root, "blk_driver", "blk0"));
        assert!(!may_reach(root, "blk_driver", "blk1"));
        assert!(may_reach(root, "net_driver", "nic0"));
        assert!(!may_reach(root, "evil", "evil0"));
    }
}

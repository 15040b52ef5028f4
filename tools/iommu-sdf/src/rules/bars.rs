//! BAR windows: the region a PCI function's driver maps as its BAR (`io_address_space
//! bar="..."`), where the PCI owner places the function's memory BARs. The owner programs
//! the BARs at the region's physical address, so the region has one, and only a PCI
//! function (a device named by bus:device.function) has BARs to place.

use crate::model::*;
use crate::problem::{p, Problem};

/// Every rule about BAR windows.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    for s in &sys.io_spaces {
        let Some(bar) = s.bar.as_deref() else { continue };
        if s.rid.is_none() {
            out.push(p(
                s.line,
                "io_address_space",
                format!("`{}` has bar=\"{bar}\" but is not a PCI function (its peripheral_id is a StreamID): it has no BARs to place", s.name),
                "name the device by its PCI address, peripheral_id=\"bus:device.function\", or remove bar=",
            ));
            continue;
        }
        match sys.region(bar) {
            None => out.push(p(
                s.line,
                "io_address_space",
                format!("`{}`'s bar names `{bar}`, which is no memory region{}", s.name, did_you_mean(bar, sys.regions.iter().map(|r| r.name.as_str()))),
                "declare <memory_region name=\"...\" size=\"0x100000\" phys_addr=\"...\" /> for the function's BAR window and name it in bar=",
            )),
            Some(r) if r.phys_addr.is_none() => out.push(p(
                s.line,
                "io_address_space",
                format!("`{}`'s BAR window `{bar}` has no phys_addr: the PCI owner places the function's BARs at a fixed address", s.name),
                "give the region phys_addr=\"...\" inside the board's PCI memory window",
            )),
            Some(_) => {}
        }
    }
}

//! Hostile descriptions. Valid generated descriptions (`iommu_sdf::gen`) are mutated as a
//! careless or hostile author could: names of every kind renamed everywhere they are used
//! (quotes, `<`, `&`, tabs, new lines, spaces, `-`, `.`, unicode, empty, 65 bytes, or names
//! the generator and the plumbing use, such as `smmu_tables` or `<client>_faults`; escaped,
//! or sometimes raw), extra `<iomap>`s in any device naming any region (another PD's
//! private one, the IOMMU's, a fault ring, one nobody maps), devices with no owner,
//! `<virtual_machine>`s with cached and uncached `<map>`s in any PD with devices passed
//! through to them (`vm="..."`), capabilities over any region (whole, a page, unaligned,
//! too long) lent to any PD or derived from another, extra maps sharing a region, other
//! names for fixed memory, StreamIDs shared or listed twice, grant_to widened, PDs nested
//! in other PDs (the IOMMU PD too), PCI hierarchies (root ports, PCI Express to PCI and
//! PCI-to-PCI bridges, switches; with ACS or not, sometimes with a bridge spoilt) with
//! devices moved below them by bus:device.function and BAR windows (`bar=`) mapped by
//! their owner or any PD, mapping queues (`Mutator::queue`), and the IOMMU plumbing left
//! to `build`. For every mutated
//! description `check` accepts:
//!
//! (a) the service starts on its policy, and what the report (`reachability`) lists is
//!     exactly what the service can be made to map: at boot each device reaches exactly its
//!     static maps; every (device, physical page, rights) the report lists is mapped by a
//!     MAP of the owner's own capability or of one lent to it by GRANT (directly, and on
//!     through a second client), and no MAP of any client's handle for any device, direct
//!     or through such GRANTs, maps anything else; a MAP past a capability's end, with
//!     rights beyond it, or with a handle the client was never given is refused, and so is
//!     a GRANT for a device the receiver does not own; and after random request sequences
//!     (as `tests/reach.rs`) every page a device reaches is one the report lists;
//! (b) no range the report lists is one of the IOMMU's own regions (`iommu_own`), overlaps
//!     one or any other region, or is a fault ring (the IOMMU PD's map with
//!     `setvar_vaddr="fault_rings"` and those at the pages after it); each is mapped by
//!     the PD that gives it (the device's owner for its static maps and guest RAM, the
//!     holder of the capability's root otherwise: the owner, a lender, or the PD a boot
//!     derivation came from), so none is another PD's private memory; each lists the
//!     device's StreamIDs, and no StreamID is shared by devices of two owners; and a device
//!     passed through to a virtual machine reaches only that guest's RAM;
//! (d) the PCI topology holds, by a model of its own (`pci`): StreamIDs are the aliases,
//!     no two devices are functions the SMMU cannot keep apart, BAR windows are mapped
//!     by their owner alone and nothing else of the host bridge's memory window is, bridge
//!     windows hold no other function's BAR window, everything reachable at a fixed address is RAM,
//!     and no owner-served IOVA window of a PCI function overlaps the memory window;
//! (c) `build`'s Microkit file has exactly the input's elements (every element, with its
//!     place and attributes), this project's removed and the plumbing added: the same
//!     protection domains, memory regions, maps, setvars, channels and virtual machines,
//!     nothing injected, and as many lines;
//! (e) each mapping queue (`<dma_queue>`, added valid or hostile: wrong sizes, second
//!     queues, PDs that are no clients, vaddrs over other maps, its region named,
//!     mapped, granted or iomapped) is in `build`'s output at its size, mapped by its
//!     client (clear of its other maps) and the IOMMU PD only, listed in the policy, and
//!     the report's reach is the same without it (`common::queues_hold`).
//!
//! A refused description's every problem has a fix. The share of mutated descriptions `check` accepts is printed (about a fifth), and must
//! not fall below 5% for the property to mean something. The tests after it show that
//! each check fails on what it is meant to catch, and the `finding_*` tests at the end
//! hold the two descriptions it found accepted that should not have been.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use iommu_pd::model::ModelHw;
use iommu_pd::Service;
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};
use iommu_sdf::gen::Rng;
use iommu_sdf::model::{Perms, System, PAGE};
use iommu_sdf::policy::Policy;
use iommu_sdf::report::Reach;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseResult, TestRunner};

mod common;
use common::call;

// ---------------------------------------------------------------------------------------
// Text surgery on the generator's output.

/// `s` as written in a double-quoted attribute value.
fn xml_attr(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if c.is_control() => o.push_str(&format!("&#{};", u32::from(c))),
            c => o.push(c),
        }
    }
    o
}

/// Just past the `>` closing the tag that starts at `at` (quoted values skipped).
fn tag_end(text: &str, at: usize) -> usize {
    let mut quoted = false;
    for (i, c) in text[at..].char_indices() {
        match c {
            '"' => quoted = !quoted,
            '>' if !quoted => return at + i + 1,
            _ => {}
        }
    }
    text.len()
}

/// Where `<tag name="name"` starts.
fn find_start(text: &str, tag: &str, name: &str) -> Option<usize> {
    text.find(&format!("<{tag} name=\"{}\"", xml_attr(name)))
}

/// Add `xml` as the first child of `<tag name="name">` (opening it if it is self-closed).
fn insert_child(text: &mut String, tag: &str, name: &str, xml: &str) -> bool {
    let Some(at) = find_start(text, tag, name) else { return false };
    let end = tag_end(text, at);
    if text[..end].ends_with("/>") {
        let open = format!("{}>\n{xml}\n</{tag}>", text[at..end - 2].trim_end());
        text.replace_range(at..end, &open);
    } else {
        text.insert_str(end, &format!("\n{xml}"));
    }
    true
}

/// Add `xml` as the last child of `<system>`.
fn top_level(text: &mut String, xml: &str) {
    let at = text.rfind("</system>").unwrap_or(text.len());
    text.insert_str(at, &format!("    {xml}\n"));
}

/// Set `attr` (raw `value`) on `<tag name="name">`, replacing it if present.
fn set_attr(text: &mut String, tag: &str, name: &str, attr: &str, value: &str) -> bool {
    let Some(at) = find_start(text, tag, name) else { return false };
    let end = tag_end(text, at);
    let key = format!(" {attr}=\"");
    match text[at..end].find(&key) {
        Some(k) => {
            let v0 = at + k + key.len();
            let v1 = v0 + text[v0..].find('"').unwrap_or(0);
            text.replace_range(v0..v1, value);
        }
        None => {
            let close = if text[..end].ends_with("/>") { end - 2 } else { end - 1 };
            text.insert_str(close, &format!(" {attr}=\"{value}\""));
        }
    }
    true
}

/// Remove `attr` from `<tag name="name">`.
fn remove_attr(text: &mut String, tag: &str, name: &str, attr: &str) -> bool {
    let Some(at) = find_start(text, tag, name) else { return false };
    let end = tag_end(text, at);
    let key = format!(" {attr}=\"");
    let Some(k) = text[at..end].find(&key) else { return false };
    let v0 = at + k + key.len();
    let v1 = v0 + text[v0..].find('"').unwrap_or(0) + 1;
    text.replace_range(at + k..v1, "");
    true
}

/// The lines of the protection domain `name`, its children included: `[start, end)`.
fn pd_block(text: &str, name: &str) -> Option<(usize, usize)> {
    let at = find_start(text, "protection_domain", name)?;
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let (open, close) = ("<protection_domain", "</protection_domain>");
    let mut depth = 0;
    let mut i = at;
    loop {
        let o = text[i..].find(open).map(|j| i + j);
        let c = text[i..].find(close).map(|j| i + j)?;
        match o {
            Some(o) if o < c => {
                i = tag_end(text, o);
                if !text[..i].ends_with("/>") {
                    depth += 1;
                }
            }
            _ => {
                depth -= 1;
                i = c + close.len();
                if depth == 0 {
                    let end = text[i..].find('\n').map_or(text.len(), |j| i + j + 1);
                    return Some((start, end));
                }
            }
        }
    }
}

/// Move the protection domain `child` (with its children) into `parent`, with `id`.
fn nest(text: &mut String, child: &str, parent: &str, id: u64) -> bool {
    let (Some((s, e)), Some(p)) = (pd_block(text, child), find_start(text, "protection_domain", parent)) else {
        return false;
    };
    if (s..e).contains(&p) {
        return false;
    }
    let mut block = text[s..e].to_string();
    set_attr(&mut block, "protection_domain", child, "id", &id.to_string());
    text.replace_range(s..e, "");
    insert_child(text, "protection_domain", parent, block.trim_end())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Region,
    Pd,
    Device,
    Cap,
    Vm,
}

/// Whether attribute `attr` of element `tag` names something of `kind`.
fn names(kind: Kind, tag: &str, attr: &str) -> bool {
    match kind {
        Kind::Region => matches!(
            (tag, attr),
            ("memory_region", "name")
                | ("map", "mr")
                | ("iomap", "mr")
                | ("setvar", "region_paddr")
                | ("dma_capability", "mr")
                | ("iommu", "stream_table" | "cmdq" | "eventq" | "context_descriptors" | "table_pool")
        ),
        Kind::Pd => matches!(
            (tag, attr),
            ("protection_domain", "name")
                | ("end", "pd")
                | ("dma_capability", "pd" | "grant_to")
                | ("dma_quota", "pd")
                | ("dma_queue", "pd")
                | ("iommu", "pd")
                | ("io_address_space", "owner")
        ),
        Kind::Device => matches!((tag, attr), ("io_address_space", "name") | ("dma_capability", "devices")),
        Kind::Cap => matches!((tag, attr), ("dma_capability", "name" | "parent")),
        Kind::Vm => matches!((tag, attr), ("virtual_machine", "name") | ("io_address_space", "vm")),
    }
}

/// Every reference to the `kind` named `old` renamed to `new` (written as given: escaped,
/// or raw), in the attributes that name that kind, list items included.
fn rename(text: &str, kind: Kind, old: &str, new: &str) -> String {
    let old = xml_attr(old);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(lt) = text[at..].find('<').map(|i| at + i) {
        out.push_str(&text[at..lt]);
        let end = tag_end(text, lt);
        let tag = &text[lt..end];
        let tag_name: String = tag[1..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // Attribute by attribute: `key="value"`.
        let mut rest = tag;
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].rsplit(|c: char| c.is_whitespace()).next().unwrap_or("");
            let v0 = eq + 2;
            let v1 = v0 + rest[v0..].find('"').unwrap_or(rest.len() - v0);
            out.push_str(&rest[..v0]);
            let value = &rest[v0..v1];
            if names(kind, &tag_name, key) {
                let items: Vec<&str> = value.split(' ').map(|item| if item == old { new } else { item }).collect();
                out.push_str(&items.join(" "));
            } else {
                out.push_str(value);
            }
            rest = &rest[v1..];
        }
        out.push_str(rest);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The plumbing left to `build`: `<iommu>` names none of the IOMMU's regions, and the
/// generator's own regions and their maps, the fault rings, some of the clients' channels
/// and the children's ids go.
fn leave_plumbing_to_build(text: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let own = ["smmu_strtab", "smmu_cmdq", "smmu_eventq", "smmu_cds", "smmu_tables"];
        let names_own = own.iter().any(|o| t.contains(&format!("\"{o}\"")));
        let ring = t.contains("mr=\"ring") || t.starts_with("<memory_region name=\"ring");
        if (t.starts_with("<memory_region") || t.starts_with("<map") || t.starts_with("<setvar")) && names_own {
            continue;
        }
        if ring && !t.contains("perms=\"r\"") {
            continue;
        }
        if ring {
            // A client reading its ring maps the region `build` declares for it.
            let client = t.split("mr=\"ring").nth(1).and_then(|s| s.split('"').next()).unwrap_or("0");
            out.push_str(&line.replace(&format!("mr=\"ring{client}\""), &format!("mr=\"drv{client}_faults\"")));
            out.push('\n');
            continue;
        }
        if t == "<channel>" && rng.below(4) != 0 {
            // Four lines: the channel, its two ends, its end tag.
            for _ in 0..3 {
                lines.next();
            }
            continue;
        }
        if t.starts_with("<iommu ") {
            out.push_str("    <iommu pd=\"iommu\" />\n");
            continue;
        }
        // A client's id is the plumbing's to give (a child that is not a client needs its own).
        let name = t.split('"').nth(1).unwrap_or_default();
        let client = text.contains(&format!("owner=\"{name}\""));
        if t.starts_with("<protection_domain name=\"drv") && t.contains(" id=\"") && client && rng.below(2) == 0 {
            let cut = line.find(" id=\"").unwrap_or(0);
            let end = cut + 5 + line[cut + 5..].find('"').unwrap_or(0) + 1;
            out.push_str(&line[..cut]);
            out.push_str(&line[end..]);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// The mutations.

/// A name a rename may give: about two in five fine, the rest hostile.
fn new_name(rng: &mut Rng, fresh: usize, clients: &[String]) -> String {
    let long = |n: usize| "n".repeat(n);
    let hostile = [
        "a\"b",
        "a<b",
        "a&b",
        "a>b",
        "a'b",
        "a\tb",
        "a\nb",
        "a b",
        " a",
        "a-b",
        "a.b",
        "ü",
        "名前",
        "",
        "0a",
        "smmu_tables",
        "smmu_regs",
        "smmu_strtab",
        "fault_rings",
        "iommu",
        "dma0",
        "drv0",
        "drv1",
        "dev0",
        "cap0",
        "ring0",
        "iommu_paddr_x",
        "drv0_faults",
        "iommu_faults",
    ];
    match rng.below(4) {
        0 => format!("renamed_{fresh}"),
        1 => match rng.below(4) {
            0 => "_".into(),
            1 => long(64),
            2 => long(65),
            _ => format!("{}_faults", clients.get(rng.below(clients.len() as u64) as usize).map_or("x", |c| c)),
        },
        _ => hostile[rng.below(hostile.len() as u64) as usize].to_string(),
    }
}

/// A valid description and the mutations made to it.
#[derive(Debug)]
struct Mutator<'a> {
    text: String,
    rng: Rng,
    base: &'a System,
    fresh: usize,
    /// Regions, devices (with their owner), capabilities (holder, grant_to) and virtual
    /// machines (with their VMM) added.
    regions: Vec<(String, u64)>,
    devices: Vec<(String, Option<String>)>,
    caps: Vec<(String, String, Vec<String>)>,
    vms: Vec<(String, String)>,
    /// Extra maps: (PD, region).
    maps: Vec<(String, String)>,
    /// Devices whose owner was taken away.
    unowned: Vec<String>,
    /// PCI hierarchies added (`pci`), each on buses of its own.
    hierarchies: u8,
    /// Queues added: the PDs they were given to.
    queues: Vec<String>,
    log: Vec<String>,
}

impl<'a> Mutator<'a> {
    fn chance(&mut self, one_in: u64) -> bool {
        self.rng.below(one_in) == 0
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.below(items.len() as u64) as usize].clone())
    }
    fn next(&mut self) -> usize {
        self.fresh += 1;
        self.fresh
    }
    fn iommu_pd(&self) -> String {
        self.base.iommu.as_ref().map_or("iommu".into(), |i| i.pd.clone())
    }
    fn pds(&self) -> Vec<String> {
        self.base.pds.iter().map(|p| p.name.clone()).collect()
    }
    fn drivers(&self) -> Vec<String> {
        let iommu = self.iommu_pd();
        self.base.pds.iter().filter(|p| p.name != iommu).map(|p| p.name.clone()).collect()
    }
    fn clients(&self) -> Vec<String> {
        self.base.clients().iter().map(|p| p.name.clone()).collect()
    }
    fn devices(&self) -> Vec<(String, Option<String>)> {
        self.base
            .io_spaces
            .iter()
            .map(|s| (s.name.clone(), s.owner.clone().filter(|_| !self.unowned.contains(&s.name))))
            .chain(self.devices.iter().cloned())
            .collect()
    }
    fn devices_of(&self, pd: &str) -> Vec<String> {
        self.devices().into_iter().filter(|(_, o)| o.as_deref() == Some(pd)).map(|(d, _)| d).collect()
    }
    fn caps(&self) -> Vec<(String, String, Vec<String>)> {
        self.base
            .caps
            .iter()
            .map(|c| (c.name.clone(), c.pd.clone(), c.grant_to.clone()))
            .chain(self.caps.iter().cloned())
            .collect()
    }
    fn region_size(&self, name: &str) -> u64 {
        self.base
            .region(name)
            .map(|r| r.size)
            .or_else(|| self.regions.iter().find(|r| r.0 == name).map(|r| r.1))
            .unwrap_or(PAGE)
    }
    fn all_regions(&self) -> Vec<String> {
        self.base.regions.iter().map(|r| r.name.clone()).chain(self.regions.iter().map(|r| r.0.clone())).collect()
    }
    /// Regions `pd` maps (itself, or in its guests), the IOMMU's own and the rings left out.
    fn regions_of(&self, pd: &str) -> Vec<String> {
        let own: Vec<&str> = self.base.iommu_own().into_iter().map(|(_, r)| r).collect();
        let mut out: Vec<String> = self
            .base
            .pd(pd)
            .map(|p| p.all_maps().map(|(m, _)| m.mr.clone()).filter(|m| !own.contains(&m.as_str())).collect())
            .unwrap_or_default();
        out.retain(|r| !r.starts_with("ring") && !r.ends_with("_faults"));
        out.extend(self.maps.iter().filter(|m| m.0 == pd).map(|m| m.1.clone()));
        out
    }
    fn perms(&mut self) -> &'static str {
        ["r", "w", "rw"][self.rng.below(3) as usize]
    }
    /// A region declared here that no PD maps.
    fn orphan(&mut self) -> String {
        let k = self.next();
        let name = format!("orphan{k}");
        let size = (1 + self.rng.below(2)) * PAGE;
        top_level(
            &mut self.text,
            &format!(
                "<memory_region name=\"{name}\" size=\"{size:#x}\" phys_addr=\"{:#x}\" />",
                0x5000_0000 + k as u64 * 0x10_0000
            ),
        );
        self.regions.push((name.clone(), size));
        name
    }
    /// Any region: one `pd` maps (when given), another PD's, the IOMMU's own, a fault ring,
    /// one nobody maps.
    fn region(&mut self, pd: Option<&str>) -> String {
        let mine = pd.map(|p| self.regions_of(p)).unwrap_or_default();
        match self.rng.below(10) {
            0..=4 if !mine.is_empty() => self.pick(&mine).unwrap_or_default(),
            5 => {
                let own: Vec<String> = self.base.iommu_own().into_iter().map(|(_, r)| r.to_string()).collect();
                self.pick(&own).unwrap_or_else(|| "smmu_regs".into())
            }
            6 => {
                let rings: Vec<String> = self
                    .all_regions()
                    .into_iter()
                    .filter(|r| r.starts_with("ring") || r.ends_with("_faults"))
                    .collect();
                self.pick(&rings).unwrap_or_else(|| "drv0_faults".into())
            }
            7 => self.orphan(),
            _ => {
                let all = self.all_regions();
                self.pick(&all).unwrap_or_default()
            }
        }
    }
    /// A root capability for `pd` over `(offset, size)` of `mr`.
    fn add_cap(
        &mut self,
        pd: &str,
        (mr, offset, size): (&str, u64, u64),
        perms: &str,
        devices: &[String],
        grant_to: &[String],
    ) {
        let name = format!("hcap{}", self.next());
        let lend = if grant_to.is_empty() { String::new() } else { format!(" grant_to=\"{}\"", grant_to.join(" ")) };
        top_level(
            &mut self.text,
            &format!(
                "<dma_capability name=\"{name}\" pd=\"{pd}\" mr=\"{mr}\" offset=\"{offset:#x}\" size=\"{size:#x}\" perms=\"{perms}\" devices=\"{}\"{lend} />",
                devices.join(" ")
            ),
        );
        self.caps.push((name, pd.into(), grant_to.to_vec()));
    }

    /// An `<iomap>` in a device, of any region.
    fn iomap(&mut self) {
        let Some((dev, owner)) = self.pick(&self.devices()) else { return };
        let region = match (&owner, self.rng.below(3)) {
            (Some(o), 0 | 1) => {
                let mine = self.regions_of(o);
                let Some(r) = self.pick(&mine) else { return };
                // Often with a capability for all of it, as a static map needs.
                if self.rng.below(4) != 0 {
                    let size = self.region_size(&r);
                    self.add_cap(&o.clone(), (&r, 0, size), "rw", std::slice::from_ref(&dev), &[]);
                }
                r
            }
            _ => self.region(None),
        };
        let k = self.next() as u64;
        let iova = match self.rng.below(12) {
            0 => 0x1_0000_0800,
            1 => 0x2_0000_0000,
            _ => 0x1_0080_0000 + k * 0x1_0000,
        };
        let perms = self.perms();
        insert_child(
            &mut self.text,
            "io_address_space",
            &dev,
            &format!("<iomap mr=\"{region}\" iovaddr=\"{iova:#x}\" perms=\"{perms}\" />"),
        );
        self.log.push(format!("iomap {region} in {dev}"));
    }

    /// A device with no owner, or one whose owner goes.
    fn ownerless(&mut self) {
        if self.chance(3) {
            let Some((dev, _)) = self.pick(&self.devices()) else { return };
            remove_attr(&mut self.text, "io_address_space", &dev, "owner");
            self.devices.iter_mut().filter(|d| d.0 == dev).for_each(|d| d.1 = None);
            self.unowned.push(dev.clone());
            self.log.push(format!("no owner for {dev}"));
            return;
        }
        let k = self.next();
        let dev = format!("nodev{k}");
        top_level(
            &mut self.text,
            &format!(
                "<io_address_space name=\"{dev}\" peripheral_id=\"{:#x}\" domain_id=\"{}\" />",
                0x800 + 8 * k,
                100 + k
            ),
        );
        self.devices.push((dev.clone(), None));
        self.log.push(format!("device {dev} with no owner"));
        if self.chance(3) {
            let r = self.region(None);
            insert_child(
                &mut self.text,
                "io_address_space",
                &dev,
                &format!("<iomap mr=\"{r}\" iovaddr=\"0x1000000\" perms=\"rw\" />"),
            );
        }
    }

    /// A virtual machine in a PD, maybe with a device passed through to it.
    fn vm(&mut self) {
        let vmm = if self.chance(5) { self.pick(&self.pds()) } else { self.pick(&self.clients()) };
        let Some(vmm) = vmm else { return };
        let k = self.next();
        let vm = format!("vm{k}");
        let ram = if self.chance(4) {
            self.region(Some(&vmm))
        } else {
            let name = format!("gram{k}");
            let size = (1 + self.rng.below(4)) * PAGE;
            top_level(
                &mut self.text,
                &format!(
                    "<memory_region name=\"{name}\" size=\"{size:#x}\" phys_addr=\"{:#x}\" />",
                    0x6000_0000 + k as u64 * 0x10_0000
                ),
            );
            self.regions.push((name.clone(), size));
            name
        };
        let cached = if self.chance(4) { " cached=\"false\"" } else { "" };
        let perms = ["rw", "rwx", "r", "x"][self.rng.below(4) as usize];
        let mut maps = format!("<map mr=\"{ram}\" vaddr=\"0x40000000\" perms=\"{perms}\"{cached} />");
        if self.chance(2) {
            let mmio = format!("gmmio{k}");
            top_level(
                &mut self.text,
                &format!(
                    "<memory_region name=\"{mmio}\" size=\"0x1000\" phys_addr=\"{:#x}\" />",
                    0x7000_0000 + k as u64 * 0x1_0000
                ),
            );
            self.regions.push((mmio.clone(), PAGE));
            maps.push_str(&format!("\n<map mr=\"{mmio}\" vaddr=\"0x9000000\" perms=\"rw\" cached=\"false\" />"));
        }
        let priority = if self.chance(8) { " priority=\"255\"" } else { "" };
        insert_child(
            &mut self.text,
            "protection_domain",
            &vmm,
            &format!("<virtual_machine name=\"{vm}\"{priority}>\n<vcpu id=\"0\" />\n{maps}\n</virtual_machine>"),
        );
        if self.chance(2) {
            // The VMM maps its guest's RAM too.
            insert_child(
                &mut self.text,
                "protection_domain",
                &vmm,
                &format!("<map mr=\"{ram}\" vaddr=\"{:#x}\" perms=\"rw\" />", 0x8_0000_0000 + k as u64 * 0x100_0000),
            );
            self.maps.push((vmm.clone(), ram.clone()));
        }
        self.vms.push((vm.clone(), vmm.clone()));
        self.log.push(format!("virtual machine {vm} in {vmm} with {ram}"));
        if self.chance(4) {
            return;
        }
        // Pass a device through.
        let target = if self.chance(10) { "nowhere".to_string() } else { vm.clone() };
        let existing = self.devices_of(&vmm);
        match self.pick(&existing) {
            Some(dev) if self.chance(3) => {
                set_attr(&mut self.text, "io_address_space", &dev, "vm", &target);
                self.log.push(format!("{dev} passed through to {target}"));
            }
            _ => {
                let dev = format!("vdev{k}");
                let owner = match self.rng.below(4) {
                    0 => format!(" owner=\"{vmm}\""),
                    1 => format!(" owner=\"{}\"", self.pick(&self.pds()).unwrap_or_default()),
                    _ => String::new(),
                };
                top_level(
                    &mut self.text,
                    &format!(
                        "<io_address_space name=\"{dev}\" peripheral_id=\"{:#x}\" domain_id=\"{}\" vm=\"{target}\"{owner} />",
                        0x1000 + 8 * k,
                        200 + k
                    ),
                );
                self.devices.push((dev.clone(), Some(vmm.clone())));
                self.log.push(format!("{dev} passed through to {target}"));
            }
        }
    }

    /// A capability over any region, lent to any PD; or one derived from another.
    fn cap(&mut self) {
        let pd = if self.chance(6) { self.pick(&self.pds()) } else { self.pick(&self.clients()) };
        let Some(pd) = pd else { return };
        let clients = self.clients();
        let grant_to: Vec<String> = match self.rng.below(10) {
            0 => vec![self.pick(&self.pds()).unwrap_or_default()],
            1 => vec!["nobody".into()],
            _ => clients.iter().filter(|_| self.rng.below(3) == 0).cloned().collect(),
        };
        let caps = self.caps();
        if self.chance(4) && !caps.is_empty() {
            let (parent, holder, lend) = self.pick(&caps).unwrap_or_default();
            let pd = match self.rng.below(3) {
                0 => holder,
                1 => self.pick(&lend).unwrap_or(holder),
                _ => pd,
            };
            let grant_to: Vec<String> =
                if self.chance(4) { grant_to } else { lend.into_iter().filter(|_| self.chance(2)).collect() };
            let mine = self.devices_of(&pd);
            let devices: Vec<String> = mine.into_iter().filter(|_| self.chance(2)).collect();
            let name = format!("hcap{}", self.next());
            let lendable =
                if grant_to.is_empty() { String::new() } else { format!(" grant_to=\"{}\"", grant_to.join(" ")) };
            let perms = ["r", "w", "rw"][self.rng.below(3) as usize];
            top_level(
                &mut self.text,
                &format!(
                    "<dma_capability name=\"{name}\" parent=\"{parent}\" pd=\"{pd}\" size=\"0x1000\" perms=\"{perms}\" devices=\"{}\"{lendable} />",
                    devices.join(" ")
                ),
            );
            self.log.push(format!("{name} derived from {parent} for {pd}"));
            self.caps.push((name, pd, grant_to));
            return;
        }
        let mr = self.region(Some(&pd));
        let size = self.region_size(&mr);
        let (offset, len) = match self.rng.below(10) {
            0 => (0x800, PAGE),
            1 => (0, size + PAGE),
            2..=5 => (0, size),
            _ => {
                let page = self.rng.below(size / PAGE);
                (page * PAGE, PAGE)
            }
        };
        let mine = self.devices_of(&pd);
        let mut devices: Vec<String> = mine.iter().filter(|_| self.rng.below(2) == 0).cloned().collect();
        if devices.is_empty() {
            devices.extend(mine.first().cloned());
        }
        if self.chance(6) {
            devices = self.pick(&self.devices()).map(|d| d.0).into_iter().collect();
        }
        let perms = self.perms();
        self.add_cap(&pd, (&mr, offset, len), perms, &devices, &grant_to);
        self.log.push(format!("capability over {mr} for {pd}, lent to {grant_to:?}"));
    }

    /// A map of any region in any PD, often with a capability over it.
    fn map(&mut self) {
        let Some(pd) = self.pick(&self.pds()) else { return };
        let mr = self.region(None);
        let k = self.next() as u64;
        let perms = self.perms();
        insert_child(
            &mut self.text,
            "protection_domain",
            &pd,
            &format!("<map mr=\"{mr}\" vaddr=\"{:#x}\" perms=\"{perms}\" />", 0x7_0000_0000 + k * 0x100_0000),
        );
        self.maps.push((pd.clone(), mr.clone()));
        self.log.push(format!("{pd} maps {mr}"));
        if self.chance(2) {
            let devices = self.devices_of(&pd);
            let size = self.region_size(&mr);
            let clients = self.clients();
            let lend: Vec<String> = clients.into_iter().filter(|_| self.chance(3)).collect();
            let perms = self.perms();
            self.add_cap(&pd, (&mr, 0, size), perms, &devices, &lend);
        }
    }

    /// A PD nested in another; sometimes the IOMMU PD in a driver.
    fn nest(&mut self) {
        let iommu = self.iommu_pd();
        let (child, parent) = if self.chance(4) {
            (iommu.clone(), self.pick(&self.drivers()))
        } else {
            let child = self.pick(&self.drivers());
            let parent = if self.chance(2) { Some(iommu.clone()) } else { self.pick(&self.pds()) };
            (child.unwrap_or_default(), parent)
        };
        let Some(parent) = parent else { return };
        if child == parent {
            return;
        }
        let clients = self.clients();
        let id = match clients.iter().position(|c| *c == child) {
            Some(i) if parent == iommu && self.rng.below(3) != 0 => i as u64 + 1,
            _ => 1 + self.rng.below(61),
        };
        if nest(&mut self.text, &child, &parent, id) {
            self.log.push(format!("{child} nested in {parent} with id {id}"));
        }
    }

    /// Another name for memory that has one: a region at a page of a fixed one (a DMA
    /// region, the SMMU's registers), or (one in three) at a page that is no RAM (QEMU
    /// virt's UART, RTC, GIC ITS, virtio-mmio transports) or across RAM's end, mapped by a
    /// PD and given to its devices.
    fn alias(&mut self) {
        let mut placed: Vec<(String, u64, u64)> =
            self.base.regions.iter().filter_map(|r| Some((r.name.clone(), r.phys_addr?, r.size))).collect();
        if self.chance(3) {
            let devices = [("the UART", 0x0900_0000), ("the RTC", 0x0901_0000), ("the GIC ITS", 0x0808_0000)];
            placed = devices.iter().map(|&(what, at)| (what.to_string(), at, PAGE)).collect();
            placed.push(("virtio-mmio".into(), 0x0a00_0000, 4 * PAGE));
            placed.push(("RAM's end".into(), 0xc000_0000 - PAGE, PAGE));
        }
        let Some((of, pa, size)) = self.pick(&placed) else { return };
        let Some(pd) = self.pick(&self.clients()) else { return };
        let k = self.next() as u64;
        let name = format!("alias{k}");
        let at = pa + self.rng.below(size / PAGE) * PAGE;
        // Across RAM's end: two pages, the second past it.
        let bytes = if of == "RAM's end" { 2 * PAGE } else { PAGE };
        top_level(
            &mut self.text,
            &format!("<memory_region name=\"{name}\" size=\"{bytes:#x}\" phys_addr=\"{at:#x}\" />"),
        );
        self.regions.push((name.clone(), bytes));
        insert_child(
            &mut self.text,
            "protection_domain",
            &pd,
            &format!("<map mr=\"{name}\" vaddr=\"{:#x}\" perms=\"rw\" />", 0x9_0000_0000 + k * 0x100_0000),
        );
        self.maps.push((pd.clone(), name.clone()));
        let devices = self.devices_of(&pd);
        self.add_cap(&pd, (&name, 0, bytes), "rw", &devices, &[]);
        self.log.push(format!("{name}, another name for {of} at {at:#x}, mapped by {pd} for DMA"));
    }

    /// StreamIDs shared: a device's peripheral_id or `streams` taking another's, listed
    /// twice, or new ones.
    fn streams(&mut self) {
        let devices: Vec<(String, u32)> = self.base.io_spaces.iter().map(|s| (s.name.clone(), s.stream)).collect();
        let (Some((dev, own)), Some((other, theirs))) = (self.pick(&devices), self.pick(&devices)) else { return };
        let k = 0x2000 + 8 * self.next() as u32;
        match self.rng.below(4) {
            0 => {
                set_attr(&mut self.text, "io_address_space", &dev, "peripheral_id", &format!("{theirs:#x}"));
                if self.chance(2) {
                    set_attr(&mut self.text, "io_address_space", &dev, "alias_ok", "true");
                    set_attr(&mut self.text, "io_address_space", &other, "alias_ok", "true");
                }
                self.log.push(format!("{dev} takes {other}'s StreamID {theirs:#x}"));
            }
            1 => {
                set_attr(&mut self.text, "io_address_space", &dev, "streams", &format!("{k:#x} {theirs:#x}"));
                self.log.push(format!("{dev} has {other}'s StreamID {theirs:#x} among its streams"));
            }
            2 => {
                let twice = if self.chance(2) { k } else { own };
                set_attr(&mut self.text, "io_address_space", &dev, "streams", &format!("{k:#x} {twice:#x}"));
                self.log.push(format!("{dev} lists a StreamID twice"));
            }
            _ => {
                set_attr(&mut self.text, "io_address_space", &dev, "streams", &format!("{k:#x} {:#x}", k + 1));
                self.log.push(format!("{dev} has more StreamIDs"));
            }
        }
    }

    /// A PCI hierarchy below a root port on bus 0 (the port alone, a PCI Express to PCI
    /// bridge, or a switch), with ACS or not, and a device or two moved below it by
    /// bus:device.function (functions of one device, sometimes), some with a BAR window in
    /// the host bridge's memory window mapped by their owner or by any PD; sometimes one
    /// bridge attribute or a BAR window is then spoiled (buses, kind, place, size).
    fn pci(&mut self) {
        if self.hierarchies >= 3 {
            return;
        }
        self.hierarchies += 1;
        let h = self.hierarchies;
        // Buses s..s+2, a root port at 0:h.0.
        let s = 1 + 4 * (h - 1);
        let acs = |m: &mut Self| if m.chance(3) { "false" } else { "true" };
        let mut bridges = Vec::new();
        let shape = self.rng.below(3);
        let (sub, device_bus) = match shape {
            0 => (s, s),
            1 => (s + 1, s + 1),
            _ => (s + 2, s + 2),
        };
        let a = acs(self);
        bridges
            .push(format!("bdf=\"0:{h:x}.0\" kind=\"root_port\" secondary=\"{s}\" subordinate=\"{sub}\" acs=\"{a}\""));
        match shape {
            1 => bridges.push(format!(
                "bdf=\"{s:x}:0.0\" kind=\"{}\" secondary=\"{}\" subordinate=\"{}\"",
                if self.chance(2) { "pcie_to_pci" } else { "pci_to_pci" },
                s + 1,
                s + 1
            )),
            2 => {
                bridges.push(format!(
                    "bdf=\"{s:x}:0.0\" kind=\"switch_upstream\" secondary=\"{}\" subordinate=\"{}\"",
                    s + 1,
                    s + 2
                ));
                let a = acs(self);
                bridges.push(format!(
                    "bdf=\"{:x}:0.0\" kind=\"switch_downstream\" secondary=\"{}\" subordinate=\"{}\" acs=\"{a}\"",
                    s + 1,
                    s + 2,
                    s + 2
                ));
            }
            _ => {}
        }
        if self.chance(4) {
            let at = self.rng.below(bridges.len() as u64) as usize;
            let spoilt = match self.rng.below(5) {
                0 => bridges[at].replace("secondary=\"", "secondary=\"1"),
                1 => bridges[at].replace(&format!("subordinate=\"{sub}\""), &format!("subordinate=\"{}\"", sub + 3)),
                2 => bridges[at].replace("root_port", "switch_upstream").replace("switch_downstream", "root_port"),
                3 => bridges[at].replace(":0.0\"", ":1.0\""),
                _ => bridges[at].replace("acs=\"true\"", "acs=\"false\""),
            };
            self.log.push(format!("bridge spoilt: {} -> {spoilt}", bridges[at]));
            bridges[at] = spoilt;
        }
        for b in &bridges {
            top_level(&mut self.text, &format!("<pci_bridge {b} />"));
        }
        self.log.push(format!("hierarchy {h}: {bridges:?}"));
        let owned: Vec<(String, Option<String>)> = self.devices().into_iter().filter(|d| d.1.is_some()).collect();
        for function in 0..1 + self.rng.below(2) {
            let Some((dev, owner)) = self.pick(&owned) else { return };
            // Below a PCI bridge, any device number; on a link, device 0.
            let d = if shape == 1 { self.rng.below(3) } else { 0 };
            let f = if self.chance(3) { function } else { 0 };
            let bdf = format!("{device_bus:x}:{d:x}.{f:x}");
            set_attr(&mut self.text, "io_address_space", &dev, "peripheral_id", &bdf);
            self.log.push(format!("{dev} is {bdf}"));
            if self.chance(2) {
                let k = self.next() as u64;
                let name = format!("bar{k}");
                let (pa, size) = match self.rng.below(8) {
                    0 => (0x1000_0000 + k * 0x10_0000 + 0x8_0000, 0x8_0000),
                    1 => (0x4100_0000 + k * 0x10_0000, 0x10_0000),
                    _ => (0x1000_0000 + k * 0x10_0000, 0x10_0000),
                };
                top_level(
                    &mut self.text,
                    &format!("<memory_region name=\"{name}\" size=\"{size:#x}\" phys_addr=\"{pa:#x}\" />"),
                );
                self.regions.push((name.clone(), size));
                set_attr(&mut self.text, "io_address_space", &dev, "bar", &name);
                let mapper = if self.chance(4) { self.pick(&self.pds()) } else { owner.clone() };
                if let Some(pd) = mapper {
                    insert_child(
                        &mut self.text,
                        "protection_domain",
                        &pd,
                        &format!(
                            "<map mr=\"{name}\" vaddr=\"{:#x}\" perms=\"rw\" cached=\"false\" />",
                            0xa_0000_0000 + k * 0x100_0000
                        ),
                    );
                    self.maps.push((pd.clone(), name.clone()));
                    self.log.push(format!("{dev}'s BAR window {name} at {pa:#x}+{size:#x}, mapped by {pd}"));
                }
            }
        }
    }

    /// A mapping queue (`<dma_queue>`), often a valid one for a client (placed by build or
    /// at a free vaddr), otherwise: of a size `check` refuses, a second one for a PD, for a
    /// PD that is no client, the IOMMU PD or no PD, at a vaddr over the client's maps, off a
    /// page or near the top of its address space; with a region of its name declared, or
    /// its region mapped by a PD (its client again, another, a guest), covered by a
    /// capability or iomapped.
    fn queue(&mut self) {
        let clients = self.clients();
        let pd = match self.rng.below(12) {
            0 => self.iommu_pd(),
            1 => self.pick(&self.pds()).unwrap_or_default(),
            2 => "nobody".into(),
            3 => self
                .queues
                .last()
                .cloned()
                .or_else(|| self.base.queues.first().map(|q| q.pd.clone()))
                .unwrap_or_default(),
            _ => self.pick(&clients).unwrap_or_default(),
        };
        let entries = match self.rng.below(8) {
            0 => ["0", "1", "3", "100", "8192", "0x40", "-1", "18446744073709551616"][self.rng.below(8) as usize]
                .to_string(),
            _ => (1u64 << (1 + self.rng.below(12))).to_string(),
        };
        let k = self.next() as u64;
        // The client's own maps, for a vaddr over one.
        let mine: Vec<u64> =
            self.base.pd(&pd).map(|p| p.maps.iter().filter_map(|m| m.vaddr).collect()).unwrap_or_default();
        let vaddr = match self.rng.below(8) {
            0 => self.pick(&mine).map(|v| format!(" vaddr=\"{v:#x}\"")).unwrap_or_default(),
            1 => format!(" vaddr=\"{:#x}\"", 0x3_0000_0000 + k * 0x100_0000 + 0x800),
            2 => " vaddr=\"0xffffffe000\"".into(),
            3 | 4 => format!(" vaddr=\"{:#x}\"", 0x3_0000_0000 + k * 0x100_0000),
            _ => String::new(),
        };
        top_level(&mut self.text, &format!("<dma_queue pd=\"{}\" entries=\"{entries}\"{vaddr} />", xml_attr(&pd)));
        self.queues.push(pd.clone());
        self.log.push(format!("a queue of {entries} entries for {pd}{vaddr}"));
        let region = format!("{pd}_queue");
        match self.rng.below(10) {
            0 => {
                top_level(&mut self.text, &format!("<memory_region name=\"{}\" size=\"0x2000\" />", xml_attr(&region)));
                self.log.push(format!("a region named {region}"));
            }
            1 | 2 => {
                let by = if self.chance(3) { pd.clone() } else { self.pick(&self.pds()).unwrap_or_default() };
                insert_child(
                    &mut self.text,
                    "protection_domain",
                    &by,
                    &format!(
                        "<map mr=\"{}\" vaddr=\"{:#x}\" perms=\"r\" />",
                        xml_attr(&region),
                        0x4_0000_0000 + k * 0x100_0000
                    ),
                );
                self.log.push(format!("{by} maps {region}"));
            }
            3 => {
                let devices = self.devices_of(&pd);
                self.add_cap(&pd, (&region, 0, PAGE), "rw", &devices, &[]);
                self.log.push(format!("a capability over {region}"));
            }
            4 => {
                let Some((dev, _)) = self.pick(&self.devices()) else { return };
                insert_child(
                    &mut self.text,
                    "io_address_space",
                    &dev,
                    &format!("<iomap mr=\"{}\" iovaddr=\"{:#x}\" perms=\"rw\" />", xml_attr(&region), 0x1_00f0_0000u64),
                );
                self.log.push(format!("{dev} iomaps {region}"));
            }
            5 => {
                let vms = self.vms.clone();
                let Some((vm, _)) = self.pick(&vms) else { return };
                let at = self.text.find(&format!("<virtual_machine name=\"{vm}\"")).map(|i| tag_end(&self.text, i));
                if let Some(at) = at {
                    self.text.insert_str(
                        at,
                        &format!("\n<map mr=\"{}\" vaddr=\"0x30000000\" perms=\"rw\" />", xml_attr(&region)),
                    );
                    self.log.push(format!("guest {vm} maps {region}"));
                }
            }
            _ => {}
        }
    }

    /// A capability may be lent further: to its holder, to every client, to anyone.
    fn lend(&mut self) {
        // Mostly a root capability, which a wider grant_to leaves valid.
        let roots: Vec<_> = self
            .base
            .caps
            .iter()
            .filter(|c| c.mr.is_some())
            .map(|c| (c.name.clone(), c.pd.clone(), c.grant_to.clone()))
            .collect();
        let caps = if self.chance(4) || roots.is_empty() { self.caps() } else { roots };
        let Some((cap, holder, _)) = self.pick(&caps) else { return };
        let clients = self.clients();
        let to = match self.rng.below(6) {
            0 => vec![holder],
            1..=3 => clients,
            4 => vec![self.pick(&self.pds()).unwrap_or_default()],
            _ => clients.into_iter().filter(|_| self.chance(2)).collect(),
        };
        set_attr(&mut self.text, "dma_capability", &cap, "grant_to", &to.join(" "));
        self.caps.iter_mut().filter(|c| c.0 == cap).for_each(|c| c.2 = to.clone());
        self.log.push(format!("{cap} may be lent to {to:?}"));
    }

    /// Something renamed, everywhere it is named.
    fn rename(&mut self) {
        let kind = [Kind::Region, Kind::Pd, Kind::Device, Kind::Cap, Kind::Vm][self.rng.below(5) as usize];
        let candidates: Vec<String> = match kind {
            Kind::Region => self.all_regions(),
            Kind::Pd => self.pds(),
            Kind::Device => self.devices().into_iter().map(|d| d.0).collect(),
            Kind::Cap => self.caps().into_iter().map(|c| c.0).collect(),
            Kind::Vm => self.vms.iter().map(|v| v.0.clone()).collect(),
        };
        let Some(old) = self.pick(&candidates) else { return };
        let clients = self.clients();
        let k = self.next();
        let new = new_name(&mut self.rng, k, &clients);
        // Mostly escaped; sometimes raw, as a careless author writes it.
        let written = if self.chance(8) { new.clone() } else { xml_attr(&new) };
        self.text = rename(&self.text, kind, &old, &written);
        self.log.push(format!("{kind:?} {old} renamed {new:?}"));
    }
}

/// A mutated description: the generator's, with 1 to 3 mutations and maybe a rename.
fn hostile(seed: u64, pds: usize, regions: usize, devices: usize, mseed: u64) -> (String, Vec<String>) {
    let text = iommu_sdf::gen::description(seed, pds, regions, devices);
    let mut rng = Rng(mseed | 1);
    let (text, plumbing) = if rng.below(3) == 0 {
        (leave_plumbing_to_build(&text, &mut rng), true)
    } else {
        // Room in the page-table pool for the devices added.
        let at = text.find("name=\"smmu_tables\" size=\"").map(|i| i + 25).unwrap_or(0);
        let end = at + text[at..].find('"').unwrap_or(0);
        let size = iommu_sdf::parse::parse_number(&text[at..end]).unwrap_or(0) + 0x40000;
        (format!("{}{size:#x}{}", &text[..at], &text[end..]), false)
    };
    let (base, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "the unmutated description is refused: {problems:#?}\n{text}");
    let mut m = Mutator {
        text,
        rng,
        base: &base,
        fresh: 0,
        regions: Vec::new(),
        devices: Vec::new(),
        caps: Vec::new(),
        vms: Vec::new(),
        maps: Vec::new(),
        unowned: Vec::new(),
        hierarchies: 0,
        queues: Vec::new(),
        log: vec![format!("plumbing left to build: {plumbing}")],
    };
    for _ in 0..1 + m.rng.below(3) {
        match m.rng.below(24) {
            21..=23 => m.queue(),
            18..=20 => m.pci(),
            0..=2 => m.iomap(),
            3 => m.ownerless(),
            4..=6 => m.vm(),
            7..=9 => m.cap(),
            10 | 11 => m.map(),
            12 | 13 => m.nest(),
            14 => m.alias(),
            15 => m.streams(),
            _ => m.lend(),
        }
    }
    // Capabilities lent more widely, for GRANTs to probe.
    if m.chance(2) {
        m.lend();
    }
    if m.chance(3) {
        m.rename();
    }
    (m.text, m.log)
}

// ---------------------------------------------------------------------------------------
// The service on the policy.

/// Where each region devices may reach is, in physical memory: its own address, or (placed
/// by Microkit, learnt by the IOMMU PD through a setvar) one far from every other.
fn placement(sys: &System) -> HashMap<String, u64> {
    iommu_sdf::policy::dma_regions(sys)
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.clone(), r.phys_addr.unwrap_or((1 << 48) + ((i as u64) << 32))))
        .collect()
}

/// The service on `sys`'s policy (changed by `tweak`), with the regions at `placement`.
fn start(sys: &System, tweak: impl FnOnce(&mut Policy)) -> Result<Service<'static, ModelHw>, iommu_pd::ConfigError> {
    let mut p = iommu_sdf::policy::policy(sys);
    tweak(&mut p);
    let at = placement(sys);
    common::start_on(&p, |r, c| at.get(&r.name).copied().unwrap_or(c.pa))
}

fn rights(p: Perms) -> Rights {
    iommu_sdf::policy::rights(p)
}

/// (device, physical page, rights) triples.
type Pages = BTreeSet<(usize, u64, u8)>;

/// Every page the report lists, per device, with the rights it lists.
fn report_pages(sys: &System, report: &[Reach], at: &HashMap<String, u64>) -> Result<Pages, String> {
    let mut out = Pages::new();
    for r in report {
        let d =
            sys.io_spaces.iter().position(|s| s.name == r.device).ok_or(format!("unknown device {:?}", r.device))?;
        let base = at.get(&r.region).ok_or(format!("{:?} is listed but is no DMA region", r.region))?;
        if r.offset % PAGE != 0 || r.len % PAGE != 0 {
            return Err(format!("{r:?} is not whole pages"));
        }
        if let Some((lo, _)) = r.phys {
            if lo != base + r.offset {
                return Err(format!("{r:?} is not at its region's address {base:#x}"));
            }
        }
        for k in 0..r.len / PAGE {
            out.insert((d, base + r.offset + k * PAGE, rights(r.rights).0));
        }
    }
    Ok(out)
}

/// A client's boot handles: (handle, length, rights), in the service's order.
fn handles(p: &Policy, client: usize) -> Vec<(u32, u64, Rights)> {
    p.caps.iter().filter(|c| c.1.client == client).enumerate().map(|(h, c)| (h as u32, c.1.len, c.1.rights)).collect()
}

/// What the service maps, probed.
struct Probe {
    s: Service<'static, ModelHw>,
    found: Pages,
    expected: Pages,
    calls: usize,
}

impl Probe {
    fn call(&mut self, client: usize, req: Request) -> Reply {
        self.calls += 1;
        call(&mut self.s, client, req)
    }
    /// MAP every page of `(client, handle)` for `device`, one at a time, each checked and
    /// unmapped again; then past its end, and with more rights, which must be refused.
    fn map_all(&mut self, client: usize, h: u32, device: usize, len: u64, r: Rights) -> Result<usize, String> {
        let mut mapped = 0;
        for k in 0..len / PAGE {
            let req = Request::Map {
                cap: Handle(h),
                device: DeviceId(device as u32),
                offset: k * PAGE,
                len: PAGE,
                iova: None,
                rights: r,
            };
            match self.call(client, req) {
                Reply::Ok { values, .. } => {
                    let iova = values[0];
                    let got = self.s.hw().reachable(device).get(&iova).copied();
                    let Some((pa, got_r)) = got else {
                        return Err(format!(
                            "client {client} {req:?} answered {iova:#x}, which the device does not reach"
                        ));
                    };
                    if got_r != r {
                        return Err(format!("client {client} {req:?} mapped {pa:#x} with {got_r:?}"));
                    }
                    if !self.expected.contains(&(device, pa, r.0)) {
                        return Err(format!(
                            "client {client} {req:?} made device {device} reach {pa:#x} ({r:?}), which the report does not list"
                        ));
                    }
                    self.found.insert((device, pa, r.0));
                    mapped += 1;
                    let mut iovas = [0; MAX_UNMAP_RANGES];
                    iovas[0] = iova;
                    let un = Request::Unmap { device: DeviceId(device as u32), iovas, count: 1 };
                    if !matches!(self.call(client, un), Reply::Ok { .. }) {
                        return Err(format!("client {client} could not unmap {iova:#x}"));
                    }
                }
                Reply::Err(ErrorCode::QuotaMappings | ErrorCode::QuotaPages) => {
                    return Err(format!("client {client} {req:?}: out of quota"));
                }
                Reply::Err(_) => {}
            }
        }
        let past = Request::Map {
            cap: Handle(h),
            device: DeviceId(device as u32),
            offset: len,
            len: PAGE,
            iova: None,
            rights: r,
        };
        let wider = Request::Map {
            cap: Handle(h),
            device: DeviceId(device as u32),
            offset: 0,
            len: PAGE,
            iova: None,
            rights: Rights::READ_WRITE,
        };
        for (req, asked) in [(past, true), (wider, r != Rights::READ_WRITE)] {
            if asked {
                if let Reply::Ok { .. } = self.call(client, req) {
                    return Err(format!(
                        "client {client} {req:?} was mapped: past the capability or beyond its rights"
                    ));
                }
            }
        }
        Ok(mapped)
    }
}

/// (a): the service starts, maps at boot exactly the static maps, and what MAP (of own
/// capabilities and of GRANTs, one and two deep) can be made to map equals the report.
fn service_equals_report(sys: &System, seed: u64) -> Result<(), String> {
    let report = iommu_sdf::report::reachability(sys);
    let at = placement(sys);
    let expected = report_pages(sys, &report, &at)?;
    let s = start(sys, |_| {}).map_err(|e| format!("the service does not start on the policy: {e:?}"))?;
    let p = iommu_sdf::policy::policy(sys);
    let clients = p.clients.len();
    let devices = p.devices.len();
    let owned = |c: usize| -> Vec<usize> { (0..devices).filter(|&d| p.devices[d].1.owner == c).collect() };

    // At boot: the static maps, page for page, and nothing else.
    for (d, space) in sys.io_spaces.iter().enumerate() {
        let mut want = BTreeMap::new();
        for m in &space.iomaps {
            let size = sys.region(&m.mr).map_or(0, |r| r.size);
            for k in 0..size / PAGE {
                want.insert(m.iovaddr + k * PAGE, (at[&m.mr] + k * PAGE, rights(m.perms)));
            }
        }
        if s.hw().reachable(d) != want {
            return Err(format!(
                "at boot {} reaches {:x?}, its static maps are {want:x?}",
                space.name,
                s.hw().reachable(d)
            ));
        }
    }
    let mut probe = Probe { s, found: Pages::new(), expected, calls: 0 };
    for d in 0..devices {
        let boot: Vec<(u64, (u64, Rights))> = probe.s.hw().reachable(d).into_iter().collect();
        for (_, (pa, r)) in boot {
            if !probe.expected.contains(&(d, pa, r.0)) {
                return Err(format!("at boot device {d} reaches {pa:#x} ({r:?}), which the report does not list"));
            }
            probe.found.insert((d, pa, r.0));
        }
    }

    // Every client's own capabilities, for every device, and a handle it does not have.
    for c in 0..clients {
        let mine = handles(&p, c);
        for d in 0..devices {
            for &(h, len, r) in &mine {
                probe.map_all(c, h, d, len, r)?;
            }
            let bogus = Request::Map {
                cap: Handle(mine.len() as u32),
                device: DeviceId(d as u32),
                offset: 0,
                len: PAGE,
                iova: None,
                rights: Rights::READ,
            };
            if let Reply::Ok { .. } = probe.call(c, bogus) {
                return Err(format!("client {c} mapped with handle {}, which it was never given", mine.len()));
            }
        }
    }

    // GRANT: each capability to each client for each of its devices (and one not its
    // own), mapped there; and on from there to each client again.
    let mut rng = Rng(seed | 1);
    for c in 0..clients {
        for &(h, len, r) in &handles(&p, c) {
            for to in 0..clients {
                let mut targets = owned(to);
                targets.extend((0..devices).find(|d| p.devices[*d].1.owner != to));
                for d in targets {
                    let g = Request::Grant {
                        cap: Handle(h),
                        to: ClientId(to as u32),
                        offset: 0,
                        len,
                        rights: r,
                        devices: 1 << d,
                    };
                    let Reply::Ok { values, .. } = probe.call(c, g) else { continue };
                    if p.devices[d].1.owner != to {
                        return Err(format!("client {c} {g:?} was granted for a device client {to} does not own"));
                    }
                    let (grant, theirs) = (values[0] as u32, values[1] as u32);
                    probe.map_all(to, theirs, d, len, r)?;
                    // One step further, to every client (sometimes, to keep it quick).
                    if rng.below(2) == 0 {
                        for to2 in 0..clients {
                            for d2 in owned(to2) {
                                let g2 = Request::Grant {
                                    cap: Handle(theirs),
                                    to: ClientId(to2 as u32),
                                    offset: 0,
                                    len,
                                    rights: r,
                                    devices: 1 << d2,
                                };
                                let Reply::Ok { values, .. } = probe.call(to, g2) else { continue };
                                probe.map_all(to2, values[1] as u32, d2, len, r)?;
                                let rv = Request::Revoke { grant: Handle(values[0] as u32) };
                                if !matches!(probe.call(to, rv), Reply::Ok { .. }) {
                                    return Err(format!("client {to} could not revoke {g2:?}"));
                                }
                            }
                        }
                    }
                    if !matches!(probe.call(c, Request::Revoke { grant: Handle(grant) }), Reply::Ok { .. }) {
                        return Err(format!("client {c} could not revoke {g:?}"));
                    }
                }
            }
        }
    }
    if probe.found != probe.expected {
        let missing: Vec<_> = probe.expected.difference(&probe.found).take(8).collect();
        let extra: Vec<_> = probe.found.difference(&probe.expected).take(8).collect();
        return Err(format!(
            "the service maps other pages than the report lists: listed, never mapped {missing:x?}; mapped, not listed {extra:x?}\nreport: {report:#?}"
        ));
    }
    Ok(())
}

/// Every page each device reaches now is one the report lists for it, with those rights.
fn within(s: &Service<'_, ModelHw>, devices: usize, expected: &Pages) -> Result<(), String> {
    for d in 0..devices {
        for (iova, (pa, r)) in s.hw().reachable(d) {
            let listed = [Rights::READ, Rights::WRITE, Rights::READ_WRITE]
                .iter()
                .any(|x| x.contains(r) && expected.contains(&(d, pa, x.0)));
            if !listed {
                return Err(format!("device {d} reaches {pa:#x} ({r:?}) at {iova:#x}, which the report does not list"));
            }
        }
    }
    Ok(())
}

/// (a), continued: random request sequences never take a device past the report.
fn random_requests(sys: &System, seed: u64, steps: usize) -> Result<(), String> {
    let report = iommu_sdf::report::reachability(sys);
    let expected = report_pages(sys, &report, &placement(sys))?;
    let mut s = start(sys, |_| {}).map_err(|e| format!("{e:?}"))?;
    let clients = sys.clients().len().max(1);
    let devices = sys.io_spaces.len();
    let mut rng = Rng(seed | 1);
    let mut mapped: Vec<(usize, usize, u64)> = Vec::new();
    let mut grants: Vec<(usize, u32)> = Vec::new();
    for step in 0..steps {
        let c = rng.below(clients as u64) as usize;
        let pages = 1 + rng.below(3);
        let req = match rng.below(10) {
            0..=3 => Request::Map {
                cap: Handle(rng.below(8) as u32),
                device: DeviceId(rng.below(devices as u64 + 1) as u32),
                offset: rng.below(4) * PAGE,
                len: pages * PAGE,
                iova: None,
                rights: [Rights::READ, Rights::WRITE, Rights::READ_WRITE][rng.below(3) as usize],
            },
            4..=6 => Request::Grant {
                cap: Handle(rng.below(8) as u32),
                to: ClientId(if rng.below(3) == 0 { c as u32 } else { rng.below(clients as u64) as u32 }),
                offset: rng.below(4) * PAGE,
                len: pages * PAGE,
                rights: [Rights::READ, Rights::READ_WRITE][rng.below(2) as usize],
                devices: 1 << rng.below(devices.max(1) as u64),
            },
            7 => match grants.iter().filter(|g| g.0 == c).nth(rng.below(4) as usize) {
                Some(&(_, g)) => Request::Revoke { grant: Handle(g) },
                None => Request::Release { cap: Handle(rng.below(8) as u32) },
            },
            _ => match mapped.iter().filter(|m| m.0 == c).nth(rng.below(4) as usize) {
                Some(&(_, d, iova)) => {
                    let mut iovas = [0; MAX_UNMAP_RANGES];
                    iovas[0] = iova;
                    Request::Unmap { device: DeviceId(d as u32), iovas, count: 1 }
                }
                None => Request::Query,
            },
        };
        let reply = call(&mut s, c, req);
        if let Reply::Ok { values, .. } = reply {
            match req {
                Request::Map { device, .. } => mapped.push((c, device.0 as usize, values[0])),
                Request::Grant { .. } => grants.push((c, values[0] as u32)),
                Request::Unmap { device, iovas, .. } => mapped.retain(|m| (m.1, m.2) != (device.0 as usize, iovas[0])),
                _ => {}
            }
        }
        within(&s, devices, &expected).map_err(|e| format!("step {step}: client {c} {req:?} -> {reply:?}: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (b): what the report lists is no memory the description keeps from devices.

/// The regions the IOMMU PD writes fault records into: the one it maps with
/// `setvar_vaddr="fault_rings"` and those at the pages after it, one per client.
fn fault_rings(sys: &System) -> HashSet<String> {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return HashSet::new() };
    let Some(base) = iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some("fault_rings")).and_then(|m| m.vaddr)
    else {
        return HashSet::new();
    };
    let clients = sys.clients().len() as u64;
    iommu
        .maps
        .iter()
        .filter(|m| m.vaddr.is_some_and(|v| v >= base && v < base + clients.max(1) * PAGE))
        .map(|m| m.mr.clone())
        .collect()
}

/// The capability a report entry's source names (`capability `x`` or `GRANT of `x` by ...`).
fn source_cap(source: &str) -> Option<&str> {
    (source.starts_with("capability") || source.starts_with("GRANT")).then(|| source.split('`').nth(1)).flatten()
}

/// The PD holding the root (the capability naming a region) `cap` derives from.
fn root_holder(sys: &System, cap: &str) -> Option<String> {
    let mut c = sys.cap(cap)?;
    for _ in 0..=sys.caps.len() {
        match &c.parent {
            None => return Some(c.pd.clone()),
            Some(parent) => c = sys.cap(parent)?,
        }
    }
    None
}

/// (b) for every range of `report`. A device passed through to a virtual machine reaching
/// more than its guest's RAM is returned apart (`Ok(Some(..))`): a known finding, see
/// `finding_a_passed_through_device_reaches_more_than_guest_ram`.
fn isolation(sys: &System, report: &[Reach]) -> Result<Option<String>, String> {
    let mut vm_finding = None;
    let own: Vec<(&str, Option<(u128, u128)>)> =
        sys.iommu_own().into_iter().map(|(_, r)| (r, sys.region(r).and_then(|r| r.phys_range()))).collect();
    let rings = fault_rings(sys);
    let mut mappers: HashMap<&str, HashSet<&str>> = HashMap::new();
    for pd in &sys.pds {
        for (m, _) in pd.all_maps() {
            mappers.entry(m.mr.as_str()).or_default().insert(pd.name.as_str());
        }
    }
    // A StreamID is one owner's: a device sharing another's translates through its table.
    let mut streams: HashMap<u32, Vec<&iommu_sdf::model::IoSpace>> = HashMap::new();
    for s in &sys.io_spaces {
        for x in std::iter::once(s.stream).chain(s.extra_streams.iter().copied()) {
            streams.entry(x).or_default().push(s);
        }
    }
    for (x, holders) in &streams {
        if holders.iter().any(|s| s.owner != holders[0].owner) {
            let names: Vec<(&str, Option<&str>)> =
                holders.iter().map(|s| (s.name.as_str(), s.owner.as_deref())).collect();
            return Err(format!("StreamID {x:#x} is shared by devices of different owners: {names:?}"));
        }
    }
    for r in report {
        let space = sys.io_space(&r.device).ok_or(format!("{r:?}: no such device"))?;
        if (r.stream, &r.extra_streams) != (space.stream, &space.extra_streams) {
            return Err(format!("{r:?} does not list {}'s StreamIDs", space.name));
        }
        // Another name for the same memory would escape every rule kept by name.
        if let Some((a, b)) = r.phys {
            let alias = sys.regions.iter().find(|x| {
                x.name != r.region && x.phys_range().is_some_and(|(lo, hi)| u128::from(a) < hi && lo < u128::from(b))
            });
            if let Some(x) = alias {
                return Err(format!(
                    "{} reaches `{}` ({}), which shares memory with `{}`",
                    r.device, r.region, r.source, x.name
                ));
            }
        }
        for (name, range) in &own {
            let overlap = match (range, r.phys) {
                (Some((lo, hi)), Some((a, b))) => u128::from(a) < *hi && *lo < u128::from(b),
                _ => false,
            };
            if r.region == *name || overlap {
                return Err(format!(
                    "{} reaches `{}`, and `{name}` is the IOMMU's own ({})",
                    r.device, r.region, r.source
                ));
            }
        }
        if rings.contains(&r.region) {
            return Err(format!("{} reaches `{}`, a fault ring ({})", r.device, r.region, r.source));
        }
        // Whose memory it is to give: the holder of the capability's root (the owner's own,
        // a lender's, or one derived at boot for the owner from another PD's), else the
        // owner's.
        let giver = match source_cap(&r.source) {
            Some(cap) => root_holder(sys, cap).ok_or(format!("{r:?}: no root for capability `{cap}`"))?,
            None => space.owner.clone().unwrap_or_default(),
        };
        if !mappers.get(r.region.as_str()).is_some_and(|m| m.contains(giver.as_str())) {
            return Err(format!(
                "{} reaches `{}` ({}), which `{giver}`, who gives it, does not map: it is {}",
                r.device,
                r.region,
                r.source,
                match mappers.get(r.region.as_str()) {
                    Some(m) => format!("memory of {m:?}"),
                    None => "nobody's memory".to_string(),
                }
            ));
        }
        if let Some(vm) = &space.vm {
            let guest = sys.pds.iter().flat_map(|p| &p.vms).find(|v| v.name == *vm);
            let ram = guest
                .is_some_and(|v| v.maps.iter().any(|m| m.cached && m.mr == r.region && m.perms.contains(r.rights)));
            if !ram || source_cap(&r.source).is_some() {
                vm_finding.get_or_insert(format!(
                    "{}, passed through to `{vm}`, reaches `{}` ({}), which is not that guest's RAM",
                    r.device, r.region, r.source
                ));
            }
        }
    }
    Ok(vm_finding)
}

// ---------------------------------------------------------------------------------------
// (c): `build`'s Microkit file is the input, this project's elements removed and the
// plumbing added.

/// An element as compared: where it is (its ancestors), its tag, its attributes.
type Element = (Vec<String>, String, BTreeMap<String, String>);

/// How an element is named among its ancestors' path.
fn label(n: roxmltree::Node) -> String {
    let attrs: Vec<String> = n.attributes().map(|a| format!("{}={:?}", a.name(), a.value())).collect();
    match (n.tag_name().name(), n.attribute("name")) {
        ("channel", _) => {
            let ends: Vec<String> = n
                .children()
                .filter(|e| e.is_element())
                .map(|e| format!("{:?}/{:?}", e.attribute("pd"), e.attribute("id")))
                .collect();
            format!("channel[{}]", ends.join(","))
        }
        (tag, Some(name)) => format!("{tag}:{name}"),
        (tag, None) => format!("{tag}[{}]", attrs.join(",")),
    }
}

// ---------------------------------------------------------------------------------------
// (d) The PCI topology, by a model of its own: bridges by their bus ranges, not by the
// tool's parent links.

/// QEMU virt's RAM (hw/arm/virt.c, VIRT_MEM; 2 GiB, as the SDK's qemu_virt_aarch64 is
/// built for): everything else, the host bridge's windows and the SMMU's frame among it,
/// is device memory or nothing.
const RAM: (u64, u64) = (0x4000_0000, 0xc000_0000);
const PCI_MEMORY: (u64, u64) = (0x1000_0000, 0x3eff_0000);

/// For a description `check` accepted: each PCI function's StreamID is its alias (the
/// conventional or PCI Express to PCI bridge nearest the root among those whose buses hold
/// its bus, QEMU's iommu-map being the identity); no two devices are functions the SMMU
/// cannot keep apart (one StreamID, one device number on a bus, or one root port or
/// downstream port without ACS whose buses hold both); each BAR window is mapped by its
/// device's owner (or its guest) alone, and no PD maps any other part of the memory
/// window; each bridge's MiB hull of the BAR windows below it holds no other BAR window;
/// every reachable range with a fixed address is RAM; and no owner-served IOVA window of a PCI function
/// overlaps the memory window.
fn pci(sys: &System, report: &[Reach]) -> Result<(), String> {
    use iommu_pd::BridgeKind::*;
    let holds = |b: &iommu_sdf::model::PciBridge, bus: u8| (b.secondary..=b.subordinate).contains(&bus);
    let policy = iommu_sdf::policy::policy(sys);
    let functions: Vec<(usize, u16)> =
        sys.io_spaces.iter().enumerate().filter_map(|(i, s)| Some((i, s.rid?))).collect();
    for &(i, rid) in &functions {
        let bus = (rid >> 8) as u8;
        let aliasing = sys.bridges.iter().filter(|b| holds(b, bus) && matches!(b.kind, PcieToPci | PciToPci));
        let alias = match aliasing.min_by_key(|b| b.rid >> 8) {
            Some(b) if b.kind == PcieToPci => u16::from(b.secondary) << 8,
            Some(b) => b.rid,
            None => rid,
        };
        if policy.devices[i].1.stream != u32::from(alias) {
            return Err(format!(
                "{} ({rid:#x}) has StreamID {:#x}, not its alias {alias:#x}",
                sys.io_spaces[i].name, policy.devices[i].1.stream
            ));
        }
    }
    for (x, &(i, a)) in functions.iter().enumerate() {
        for &(j, b) in &functions[..x] {
            let (si, sj) = (policy.devices[i].1.stream, policy.devices[j].1.stream);
            let open = sys.bridges.iter().any(|o| {
                matches!(o.kind, RootPort | SwitchDownstream)
                    && !o.acs
                    && holds(o, (a >> 8) as u8)
                    && holds(o, (b >> 8) as u8)
            });
            if si == sj || a >> 3 == b >> 3 || open {
                return Err(format!(
                    "{} and {} cannot be kept apart, and are two devices",
                    sys.io_spaces[i].name, sys.io_spaces[j].name
                ));
            }
        }
    }
    let bars: Vec<(usize, &str, u64, u64)> = sys
        .io_spaces
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let r = sys.region(s.bar.as_deref()?)?;
            Some((i, r.name.as_str(), r.phys_addr?, r.size))
        })
        .collect();
    for pd in &sys.pds {
        for (m, vm) in pd.all_maps() {
            let Some(r) = sys.region(&m.mr) else { continue };
            let Some(pa) = r.phys_addr else { continue };
            let in_window = pa < PCI_MEMORY.1 && PCI_MEMORY.0 < pa + r.size;
            match bars.iter().find(|b| b.1 == r.name) {
                Some(&(i, ..)) => {
                    let s = &sys.io_spaces[i];
                    let ok = match vm {
                        Some(v) => s.vm.as_deref() == Some(v.name.as_str()),
                        None => s.owner.as_deref() == Some(pd.name.as_str()),
                    };
                    if !ok {
                        return Err(format!("{} maps {}, {}'s BAR window", pd.name, r.name, s.name));
                    }
                }
                None if in_window => {
                    return Err(format!("{} maps {}, in the PCI memory window and no BAR window", pd.name, r.name))
                }
                None => {}
            }
        }
    }
    for b in &sys.bridges {
        let below: Vec<_> =
            bars.iter().filter(|x| sys.io_spaces[x.0].rid.is_some_and(|r| holds(b, (r >> 8) as u8))).collect();
        let (Some(lo), Some(hi)) = (below.iter().map(|x| x.2).min(), below.iter().map(|x| x.2 + x.3).max()) else {
            continue;
        };
        let (lo, hi) = (lo & !0xf_ffff, (hi + 0xf_ffff) & !0xf_ffff);
        if let Some(x) = bars.iter().find(|x| !below.contains(x) && x.2 < hi && lo < x.2 + x.3) {
            return Err(format!(
                "bridge {:#x}'s window {lo:#x}..{hi:#x} holds {}'s BAR window",
                b.rid, sys.io_spaces[x.0].name
            ));
        }
    }
    for r in report {
        if let Some((start, end)) = r.phys {
            if start < RAM.0 || end > RAM.1 {
                return Err(format!("{} reaches {} ({start:#x}..{end:#x}), not RAM {RAM:x?}", r.device, r.region));
            }
        }
    }
    for &(i, _) in &functions {
        let s = &sys.io_spaces[i];
        if s.vm.is_none() && s.iova_base < PCI_MEMORY.1 && PCI_MEMORY.0 < s.iova_base.saturating_add(s.iova_size) {
            return Err(format!("{}'s IOVA window overlaps the PCI memory window", s.name));
        }
    }
    Ok(())
}

/// Every element under `<system>` (not this project's own), as a sorted list.
fn elements(doc: &roxmltree::Document, skip_ours: bool) -> Vec<Element> {
    let ours = ["io_address_space", "dma_capability", "dma_quota", "dma_queue", "iommu", "pci_bridge"];
    let mut out = Vec::new();
    fn walk(n: roxmltree::Node, path: &mut Vec<String>, out: &mut Vec<Element>) {
        for c in n.children().filter(|c| c.is_element()) {
            let attrs = c.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect();
            out.push((path.clone(), c.tag_name().name().to_string(), attrs));
            path.push(label(c));
            walk(c, path, out);
            path.pop();
        }
    }
    for c in doc.root_element().children().filter(|c| c.is_element()) {
        if skip_ours && ours.contains(&c.tag_name().name()) {
            continue;
        }
        let attrs = c.attributes().map(|a| (a.name().to_string(), a.value().to_string())).collect();
        out.push((Vec::new(), c.tag_name().name().to_string(), attrs));
        let mut path = vec![label(c)];
        walk(c, &mut path, &mut out);
    }
    out.sort();
    out
}

fn build_is_input_plus_plumbing(text: &str, sys: &System) -> Result<(), String> {
    let out = iommu_sdf::build::microkit_system(text, sys).map_err(|e| format!("build failed: {e}"))?;
    output_is_input_plus_plumbing(text, sys, &out)
}

/// `out`, as `build` would write it for `text`, is the input and its plumbing.
fn output_is_input_plus_plumbing(text: &str, sys: &System, out: &str) -> Result<(), String> {
    if out.lines().count() != text.lines().count() {
        return Err(format!("build wrote {} lines for {}:\n{out}", out.lines().count(), text.lines().count()));
    }
    let input = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
    let output = roxmltree::Document::parse(out).map_err(|e| format!("build's output is not XML: {e}\n{out}"))?;
    let pd_names = |d: &roxmltree::Document| -> BTreeSet<String> {
        d.descendants()
            .filter(|n| n.has_tag_name("protection_domain"))
            .filter_map(|n| n.attribute("name"))
            .map(String::from)
            .collect()
    };
    if pd_names(&input) != pd_names(&output) {
        return Err(format!(
            "build's protection domains {:?} are not the input's {:?}",
            pd_names(&output),
            pd_names(&input)
        ));
    }
    let region_names = |d: &roxmltree::Document| -> BTreeSet<String> {
        d.descendants()
            .filter(|n| n.has_tag_name("memory_region"))
            .filter_map(|n| n.attribute("name"))
            .map(String::from)
            .collect()
    };
    let want_regions: BTreeSet<String> = sys.regions.iter().map(|r| r.name.clone()).collect();
    if region_names(&output) != want_regions {
        return Err(format!("build's memory regions {:?} are not {want_regions:?}", region_names(&output)));
    }

    // What the plumbing and the IOMMU PD's setvars add, parsed as XML on their own.
    let mut want = elements(&input, true);
    let fragment = |xml: &str| -> Result<Vec<Element>, String> {
        let wrapped = format!("<system>{xml}</system>");
        let doc = roxmltree::Document::parse(&wrapped).map_err(|e| format!("generated XML: {e}: {xml}"))?;
        Ok(elements(&doc, false))
    };
    want.extend(fragment(&sys.generated.top)?);
    for (_, xml) in &sys.generated.queue_regions {
        want.extend(fragment(xml)?);
    }
    // Each client's map of its queue, inside the client.
    for (pd, xml) in &sys.generated.in_pd {
        let node = input
            .descendants()
            .find(|n| n.has_tag_name("protection_domain") && n.attribute("name") == Some(pd.as_str()))
            .ok_or(format!("no protection domain {pd} for its queue's map"))?;
        let mut path: Vec<String> =
            node.ancestors().filter(|a| a.is_element() && *a != input.root_element()).map(label).collect();
        path.reverse();
        for (mut at, tag, attrs) in fragment(xml)? {
            let mut full = path.clone();
            full.append(&mut at);
            want.push((full, tag, attrs));
        }
    }
    if let Some(iommu) = &sys.iommu {
        let node = input
            .descendants()
            .find(|n| n.has_tag_name("protection_domain") && n.attribute("name") == Some(iommu.pd.as_str()))
            .ok_or("no IOMMU PD")?;
        let mut path: Vec<String> =
            node.ancestors().filter(|a| a.is_element() && *a != input.root_element()).map(label).collect();
        path.reverse();
        let mut setvars = sys.generated.in_iommu_pd.clone();
        for r in iommu_sdf::policy::dma_regions(sys) {
            setvars.push_str(&format!(
                "<setvar symbol=\"{}\" region_paddr=\"{}\" />",
                xml_attr(&iommu_sdf::build::paddr_symbol(&r.name)),
                xml_attr(&r.name)
            ));
        }
        for (mut at, tag, attrs) in fragment(&setvars)? {
            let mut full = path.clone();
            full.append(&mut at);
            want.push((full, tag, attrs));
        }
    }
    // Generated child ids.
    for (pd, id) in &sys.generated.child_ids {
        let e = want
            .iter_mut()
            .find(|e| e.1 == "protection_domain" && e.2.get("name") == Some(pd))
            .ok_or(format!("no protection domain {pd} for its id"))?;
        e.2.insert("id".into(), id.to_string());
    }
    // The IOMMU PD's stack, where the description gives none.
    if let (Some(iommu), Some(stack)) = (&sys.iommu, sys.generated.iommu_stack) {
        let e = want
            .iter_mut()
            .find(|e| e.1 == "protection_domain" && e.2.get("name") == Some(&iommu.pd))
            .ok_or("no IOMMU PD for its stack")?;
        e.2.insert("stack_size".into(), format!("{stack:#x}"));
    }
    want.sort();
    let got = elements(&output, false);
    if got != want {
        let extra: Vec<_> = got.iter().filter(|e| !want.contains(e)).take(6).collect();
        let missing: Vec<_> = want.iter().filter(|e| !got.contains(e)).take(6).collect();
        return Err(format!(
            "build's output differs from the input and its plumbing: added {extra:#?}\nlost {missing:#?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

/// The three properties for one accepted description.
fn accepted(text: &str, sys: &System, seed: u64) -> Result<(), String> {
    pci(sys, &iommu_sdf::report::reachability(sys)).map_err(|e| format!("(d) {e}"))?;
    service_equals_report(sys, seed).map_err(|e| format!("(a) {e}"))?;
    random_requests(sys, seed, 150).map_err(|e| format!("(a) {e}"))?;
    if let Some(beyond) = isolation(sys, &iommu_sdf::report::reachability(sys)).map_err(|e| format!("(b) {e}"))? {
        return Err(format!("(b) a passed-through device reaches more than its guest's RAM: {beyond:?}"));
    }
    build_is_input_plus_plumbing(text, sys).map_err(|e| format!("(c) {e}"))?;
    let out = iommu_sdf::build::microkit_system(text, sys).map_err(|e| format!("(e) build failed: {e}"))?;
    common::queues_hold(text, sys, &out).map_err(|e| format!("(e) {e}"))
}

#[test]
fn hostile_descriptions_that_pass_check_are_what_the_report_says() {
    let cases = 200;
    let seen = AtomicUsize::new(0);
    let passed = AtomicUsize::new(0);
    let with_bridges = AtomicUsize::new(0);
    let with_queues = AtomicUsize::new(0);
    let mut runner = TestRunner::new(RunnerConfig { failure_persistence: None, ..RunnerConfig::with_cases(cases) });
    let strategy = (any::<u64>(), 1usize..5, 1usize..8, 1usize..7, any::<u64>());
    let result = runner.run(&strategy, |(seed, pds, regions, devices, mseed)| -> TestCaseResult {
        let (text, log) = hostile(seed, pds, regions, devices, mseed);
        let (sys, problems) = iommu_sdf::check_text(&text);
        seen.fetch_add(1, Ordering::Relaxed);
        if !problems.is_empty() {
            // Refused: each problem says what would fix it.
            if let Some(p) = problems.iter().find(|p| p.fix.trim().is_empty()) {
                return Err(TestCaseError::fail(format!("{p:?} has no fix\nmutations: {log:#?}\n{text}")));
            }
            return Ok(());
        }
        if !sys.queues.is_empty() {
            with_queues.fetch_add(1, Ordering::Relaxed);
        }
        passed.fetch_add(1, Ordering::Relaxed);
        if !sys.bridges.is_empty() {
            with_bridges.fetch_add(1, Ordering::Relaxed);
        }
        accepted(&text, &sys, mseed).map_err(|e| TestCaseError::fail(format!("{e}\nmutations: {log:#?}\n{text}")))?;
        Ok(())
    });
    let (seen, passed) = (seen.load(Ordering::Relaxed), passed.load(Ordering::Relaxed));
    let with_bridges = with_bridges.load(Ordering::Relaxed);
    let with_queues = with_queues.load(Ordering::Relaxed);
    println!(
        "hostile: check accepted {passed} of {seen} mutated descriptions ({}%), {with_bridges} with PCI bridges, {with_queues} with mapping queues",
        passed * 100 / seen.max(1)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // Too few accepted and the properties above were hardly asked.
    assert!(passed * 20 >= seen, "check accepted only {passed} of {seen}");
    // And (d) was asked of descriptions with a PCI hierarchy.
    assert!(with_bridges * 50 >= passed, "only {with_bridges} of {passed} accepted had PCI bridges");
    // And (e) of descriptions with mapping queues.
    assert!(with_queues * 10 >= passed, "only {with_queues} of {passed} accepted had mapping queues");
}

// ---------------------------------------------------------------------------------------
// The checks above catch what they are for: each on a description, policy or output
// known to be wrong.

/// (d) fails on what it is for: `ok-pci.xml` read without the rules, with a driver mapping
/// another function's BAR window; and with a StreamID that is the requester ID, not the
/// alias below the PCI Express to PCI bridge.
#[test]
fn the_pci_check_catches_a_foreign_bar_map_and_a_missed_alias() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdf/ok-pci.xml")).unwrap();
    let read = |text: &str| {
        let (mut sys, problems) = iommu_sdf::parse::parse(text);
        assert!(problems.is_empty(), "{problems:#?}");
        iommu_sdf::topology::derive_streams(&mut sys, &iommu_sdf::Board::default());
        sys
    };
    let sys = read(&text);
    assert_eq!(pci(&sys, &iommu_sdf::report::reachability(&sys)), Ok(()));
    let foreign = text.replace(
        r#"<map mr="legacy_bar" vaddr="0x7000000" perms="rw" cached="false" />"#,
        r#"<map mr="legacy_bar" vaddr="0x7000000" perms="rw" cached="false" /><map mr="rp_bar" vaddr="0x7100000" perms="rw" cached="false" />"#,
    );
    let sys = read(&foreign);
    assert_eq!(pci(&sys, &[]), Err("legacy_driver maps rp_bar, edu_rp's BAR window".to_string()));
    let mut sys = read(&text);
    sys.io_spaces[3].stream = 0x508;
    assert_eq!(pci(&sys, &[]), Err("edu_legacy (0x508) has StreamID 0x508, not its alias 0x500".to_string()));
}

/// A generated description, its first device given its owner's neighbour's private region
/// by an `<iomap>`: `check` refuses it (the ownership rule); read without the rules, as
/// `check` would see it with that rule off, (b) finds the other PD's memory.
#[test]
fn isolation_catches_another_pds_private_region() {
    let text = iommu_sdf::gen::description(3, 2, 2, 2);
    // dma1 is drv1's, dev0 is drv0's; drv0 gets a capability over dma1 and maps it for dev0.
    let mut bad = text.clone();
    assert!(insert_child(
        &mut bad,
        "io_address_space",
        "dev0",
        r#"<iomap mr="dma1" iovaddr="0x100800000" perms="rw" />"#
    ));
    let (_, problems) = iommu_sdf::check_text(&bad);
    assert!(problems.iter().any(|p| p.message.contains("`dev0` iomaps `dma1`")), "{problems:#?}");
    let (mut sys, read) = iommu_sdf::parse::parse(&bad);
    assert!(read.is_empty(), "{read:#?}");
    iommu_sdf::plumbing::complete(&mut sys);
    let e = isolation(&sys, &iommu_sdf::report::reachability(&sys)).unwrap_err();
    assert!(e.contains("dev0 reaches `dma1`") && e.contains("`drv0`, who gives it, does not map"), "{e}");
    // The same with a fault ring, and with one of the IOMMU's own regions.
    for (mr, says) in [("ring1", "a fault ring"), ("smmu_cmdq", "the IOMMU's own")] {
        let mut bad = text.clone();
        insert_child(
            &mut bad,
            "io_address_space",
            "dev0",
            &format!(r#"<iomap mr="{mr}" iovaddr="0x100800000" perms="rw" />"#),
        );
        let (mut sys, _) = iommu_sdf::parse::parse(&bad);
        iommu_sdf::plumbing::complete(&mut sys);
        let e = isolation(&sys, &iommu_sdf::report::reachability(&sys)).unwrap_err();
        assert!(e.contains(says), "{e}");
    }
    // And the unmutated description is clean.
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty());
    assert_eq!(isolation(&sys, &iommu_sdf::report::reachability(&sys)), Ok(None));
}

/// A capability derived at boot for another PD, as its parent's grant_to allows, is the
/// parent holder's memory to give: all three properties hold, (b) included.
#[test]
fn a_capability_derived_for_another_pd_is_its_lenders_memory() {
    let mut text = iommu_sdf::gen::description(3, 2, 2, 2);
    let (sys, _) = iommu_sdf::check_text(&text);
    let cap0 = sys.cap("cap0").unwrap();
    assert_eq!((cap0.pd.as_str(), cap0.mr.as_deref()), ("drv0", Some("dma0")));
    let perms = if cap0.perms.read { "r" } else { "w" };
    set_attr(&mut text, "dma_capability", "cap0", "grant_to", "drv1");
    top_level(
        &mut text,
        &format!(
            r#"<dma_capability name="boot_lent" parent="cap0" pd="drv1" size="0x1000" perms="{perms}" devices="dev1" />"#
        ),
    );
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    let report = iommu_sdf::report::reachability(&sys);
    assert!(
        report.iter().any(|r| r.device == "dev1" && r.region == "dma0" && r.source == "capability `boot_lent`"),
        "{report:#?}"
    );
    assert_eq!(accepted(&text, &sys, 1), Ok(()));
}

/// The service and the report disagreeing either way is caught: a policy that lets a
/// capability be lent where the description does not (the service maps more than the
/// report lists), or one that drops a capability's device (it maps less).
#[test]
fn equality_catches_a_service_that_differs_from_the_report() {
    // Three drivers, each owning a device; cap0 is drv0's, lent to nobody.
    let text = iommu_sdf::gen::description(11, 3, 3, 3);
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    service_equals_report(&sys, 1).unwrap();
    let report = iommu_sdf::report::reachability(&sys);
    let expected = report_pages(&sys, &report, &placement(&sys)).unwrap();
    let p = iommu_sdf::policy::policy(&sys);

    // Lent to everyone: some other client's device can now reach it.
    let mut s = start(&sys, |p| p.caps.iter_mut().for_each(|c| c.1.grant_to = u64::MAX)).unwrap();
    let (h, len, r) = handles(&p, 0)[0];
    let mut probe =
        Probe { s: start(&sys, |_| {}).unwrap(), found: Pages::new(), expected: expected.clone(), calls: 0 };
    let other = (0..p.devices.len()).find(|d| p.devices[*d].1.owner == 1).unwrap();
    let g = Request::Grant { cap: Handle(h), to: ClientId(1), offset: 0, len, rights: r, devices: 1 << other };
    let Reply::Ok { values, .. } = call(&mut s, 0, g) else { panic!("the widened policy refused {g:?}") };
    probe.s = s;
    let e = probe.map_all(1, values[1] as u32, other, len, r).unwrap_err();
    assert!(e.contains("which the report does not list"), "{e}");

    // A capability that names no device: the report's pages for it are never mapped.
    let narrowed = |p: &mut Policy| p.caps.iter_mut().for_each(|c| c.1.devices = 0);
    let mut probe = Probe { s: start(&sys, narrowed).unwrap(), found: Pages::new(), expected, calls: 0 };
    let (h, len, r) = handles(&p, 0)[0];
    assert_eq!(probe.map_all(0, h, 0, len, r), Ok(0));
    assert!(probe.found != probe.expected);
}

/// An element `build` did not take from the input or the plumbing is caught, and so is a
/// lost one.
#[test]
fn the_build_comparison_catches_an_injected_element() {
    let text = iommu_sdf::gen::description(5, 2, 3, 2);
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty());
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    output_is_input_plus_plumbing(&text, &sys, &out).unwrap();
    // Another PD maps a region, on an existing line.
    let injected = out.replacen(
        "<program_image path=\"drv1.elf\" />",
        "<program_image path=\"drv1.elf\" /><map mr=\"dma0\" vaddr=\"0x9000000\" />",
        1,
    );
    assert_ne!(injected, out);
    let e = output_is_input_plus_plumbing(&text, &sys, &injected).unwrap_err();
    assert!(e.contains("dma0"), "{e}");
    // A protection domain more.
    let injected = out.replacen(
        "</system>",
        "<protection_domain name=\"evil\"><program_image path=\"e.elf\" /></protection_domain></system>",
        1,
    );
    let e = output_is_input_plus_plumbing(&text, &sys, &injected).unwrap_err();
    assert!(e.contains("evil"), "{e}");
    // A map lost.
    let lost = out.replacen("<map mr=\"dma0\" vaddr=\"0x4000000\" perms=\"rw\" />", "", 1);
    assert_ne!(lost, out);
    assert!(output_is_input_plus_plumbing(&text, &sys, &lost).is_err());
}

/// Found by the property above: a device passed through to a virtual machine reached
/// more than the guest's RAM, through a capability of the VMM naming the device
/// (`vmm_buf`: the VMM's own memory) or through a GRANT another client may make to the VMM
/// (`lent`: `lender`'s memory, for any device of the VMM). `check` refuses both now.
#[test]
fn finding_a_passed_through_device_reaches_more_than_guest_ram() {
    let (_, problems) = iommu_sdf::check_text(FINDING_VM);
    for (name, says) in [("vmm_buf", "passed through to the guest"), ("lent", "the VMM of the guest")] {
        assert!(
            problems.iter().any(|p| p.message.contains(&format!("`{name}`")) && p.message.contains(says)),
            "{problems:#?}"
        );
    }
}

const FINDING_VM: &str = r#"<?xml version="1.0"?>
<system>
    <memory_region name="smmu_regs" size="0x20000" phys_addr="0x9050000" />
    <memory_region name="guest_ram" size="0x1000" phys_addr="0x50000000" />
    <memory_region name="vmm_private" size="0x1000" phys_addr="0x48000000" />
    <memory_region name="lender_buf" size="0x1000" phys_addr="0x48100000" />
    <protection_domain name="iommu" priority="250">
        <program_image path="iommu.elf" />
        <map mr="smmu_regs" vaddr="0x2000000" perms="rw" cached="false" setvar_vaddr="smmu_regs" />
    </protection_domain>
    <protection_domain name="vmm" priority="100">
        <program_image path="vmm.elf" />
        <map mr="vmm_private" vaddr="0x30000000" perms="rw" />
        <virtual_machine name="guest">
            <vcpu id="0" />
            <map mr="guest_ram" vaddr="0x40000000" perms="rw" />
        </virtual_machine>
    </protection_domain>
    <protection_domain name="lender" priority="100">
        <program_image path="lender.elf" />
        <map mr="lender_buf" vaddr="0x30000000" perms="rw" />
    </protection_domain>
    <iommu pd="iommu" />
    <io_address_space name="passthrough" peripheral_id="0x10" domain_id="1" vm="guest" />
    <dma_capability name="vmm_buf" pd="vmm" mr="vmm_private" size="0x1000" perms="rw" devices="passthrough" />
    <dma_capability name="lent" pd="lender" mr="lender_buf" size="0x1000" perms="rw" grant_to="vmm" />
    <dma_quota pd="vmm" mappings="2" pages="2" />
    <dma_quota pd="lender" mappings="2" pages="2" />
</system>
"#;

/// Found by the property above: `check` accepted two devices of one owner sharing a
/// StreamID when both said `alias_ok="true"`, and `Service::new` refuses any StreamID two
/// devices list (`ConfigError::SharedStream`): the IOMMU PD would not have started on a
/// description `check` passed. `check` refuses the sharing now (and `alias_ok`).
#[test]
fn finding_an_acknowledged_alias_does_not_start_the_service() {
    let (_, problems) = iommu_sdf::check_text(FINDING_ALIAS);
    assert!(problems.iter().any(|p| p.message.contains("share StreamID 0x10")), "{problems:#?}");
}

const FINDING_ALIAS: &str = r#"<?xml version="1.0"?>
<system>
    <memory_region name="smmu_regs" size="0x20000" phys_addr="0x9050000" />
    <protection_domain name="iommu" priority="250">
        <program_image path="iommu.elf" />
        <map mr="smmu_regs" vaddr="0x2000000" perms="rw" cached="false" setvar_vaddr="smmu_regs" />
    </protection_domain>
    <protection_domain name="drv" priority="100">
        <program_image path="drv.elf" />
    </protection_domain>
    <iommu pd="iommu" />
    <io_address_space name="dev_a" peripheral_id="0x10" domain_id="1" owner="drv" alias_ok="true" />
    <io_address_space name="dev_b" peripheral_id="0x10" domain_id="2" owner="drv" alias_ok="true" />
</system>
"#;

//! Random valid descriptions, for property tests and benchmarks: every PD maps its own
//! regions, every device has one owner and its own StreamID, capabilities stay inside
//! what their holder maps, quotas hold the static maps, and the page-table pool is big
//! enough. They follow the IOMMU PD's conventions: client i calls it on the channel
//! whose IOMMU end is id i + 1, its fault ring is the page at `fault_rings + i * 0x1000`
//! (read-only in the client), it runs below the IOMMU PD, and some drivers are the IOMMU
//! PD's children with id i + 1; some clients have a mapping queue (`<dma_queue>`). `check`
//! must find nothing wrong with any of them.

use std::fmt::Write as _;

/// A small deterministic generator (xorshift64*).
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A valid description with `pds` driver PDs, `regions` DMA regions and `devices` devices.
pub fn description(seed: u64, pds: usize, regions: usize, devices: usize) -> String {
    description_with_caps(seed, pds, regions, devices, 0)
}

/// As `description`, with `extra` more capabilities per region, each derived from the
/// region's own (for descriptions with many capabilities: `extra` = 3 gives 4 a region).
/// With `extra` > 0 the region's capabilities are exactly 1 + `extra`.
pub fn description_with_caps(seed: u64, pds: usize, regions: usize, devices: usize, extra: usize) -> String {
    description_sized(seed, pds, regions, devices, extra, 1)
}

/// As `description_with_caps`, each device with `streams` StreamIDs (1 to 8: its first,
/// and the ones after it in `streams="..."`).
pub fn description_sized(
    seed: u64,
    pds: usize,
    regions: usize,
    devices: usize,
    extra: usize,
    streams: usize,
) -> String {
    let mut rng = Rng(seed | 1);
    let mut o = String::from("<?xml version=\"1.0\"?>\n<system>\n");
    // The SMMU's register frame (QEMU virt's), below every DMA region.
    o.push_str("    <memory_region name=\"smmu_regs\" size=\"0x20000\" phys_addr=\"0x9050000\" />\n");
    for name in ["strtab", "cmdq", "eventq", "cds"] {
        let _ = writeln!(o, "    <memory_region name=\"smmu_{name}\" size=\"0x10000\" />");
    }
    // Worst case: a root per device and three tables per page of quota.
    let quota_pages = 16u64;
    let pool_pages = devices as u64 + 3 * quota_pages * pds as u64;
    let _ = writeln!(o, "    <memory_region name=\"smmu_tables\" size=\"{:#x}\" />", pool_pages * 4096);
    // Region r belongs to PD r % pds; fixed, disjoint physical addresses.
    for r in 0..regions {
        let pages = 1 + rng.below(4);
        let _ = writeln!(
            o,
            "    <memory_region name=\"dma{r}\" size=\"{:#x}\" phys_addr=\"{:#x}\" />",
            pages * 4096,
            0x4000_0000 + r as u64 * 0x10_0000
        );
    }
    // Drivers 0..clients own a device (driver p owns device p first), so they are the
    // clients, and driver p is client p.
    let clients = pds.min(devices);
    for p in 0..clients {
        let _ = writeln!(o, "    <memory_region name=\"ring{p}\" size=\"0x1000\" />");
    }
    let iommu_priority = 200 + rng.below(55);
    // The first `nested` drivers are the IOMMU PD's children, with id p + 1: every client
    // (the IOMMU PD hears only of its children's crashes), and some of the others.
    let nested = clients + rng.below((pds - clients) as u64 + 1) as usize;
    let _ = writeln!(o, "    <protection_domain name=\"iommu\" priority=\"{iommu_priority}\">");
    o.push_str("        <program_image path=\"iommu.elf\" />\n");
    // The timer wakes it to drain its event queue (the storm rule's bound, which a queue
    // `build` writes, 4 KiB, needs), on id 12 where no client's channel is.
    if clients < 12 {
        o.push_str("        <irq irq=\"30\" id=\"12\" trigger=\"level\" />\n");
    }
    o.push_str("        <map mr=\"smmu_regs\" vaddr=\"0x8000000\" perms=\"rw\" cached=\"false\" setvar_vaddr=\"smmu_regs\" />\n");
    // Its own regions, where it learns their place, size and physical address.
    for (i, name) in ["strtab", "cmdq", "eventq", "cds", "tables"].iter().enumerate() {
        let _ = writeln!(
            o,
            "        <map mr=\"smmu_{name}\" vaddr=\"{:#x}\" perms=\"rw\" setvar_vaddr=\"smmu_{name}\" setvar_size=\"smmu_{name}_size\" />",
            0x2000_0000 + i as u64 * 0x1000_0000
        );
        let _ = writeln!(o, "        <setvar symbol=\"smmu_{name}_paddr\" region_paddr=\"smmu_{name}\" />");
    }
    for p in 0..clients {
        let setvar = if p == 0 { " setvar_vaddr=\"fault_rings\"" } else { "" };
        let _ = writeln!(
            o,
            "        <map mr=\"ring{p}\" vaddr=\"{:#x}\" perms=\"rw\"{setvar} />",
            0x1000_0000 + p as u64 * 0x1000
        );
    }
    for p in 0..pds {
        if p == nested {
            let _ = writeln!(o, "    </protection_domain>");
        }
        let indent = if p < nested { "    " } else { "" };
        // Below the IOMMU PD; sometimes Microkit's default, 0.
        let priority = match rng.below(4) {
            0 => String::new(),
            _ => format!(" priority=\"{}\"", rng.below(iommu_priority)),
        };
        let id = if p < nested { format!(" id=\"{}\"", p + 1) } else { String::new() };
        let _ = writeln!(o, "{indent}    <protection_domain name=\"drv{p}\"{priority}{id}>");
        let _ = writeln!(o, "{indent}        <program_image path=\"drv{p}.elf\" />");
        for r in (p..regions).step_by(pds) {
            let _ = writeln!(
                o,
                "{indent}        <map mr=\"dma{r}\" vaddr=\"{:#x}\" perms=\"rw\" />",
                0x400_0000 + r as u64 * 0x10_0000
            );
        }
        if p < clients && rng.below(4) != 0 {
            let _ = writeln!(o, "{indent}        <map mr=\"ring{p}\" vaddr=\"0x3000000\" perms=\"r\" />");
        }
        let _ = writeln!(o, "{indent}    </protection_domain>");
    }
    if nested == pds {
        let _ = writeln!(o, "    </protection_domain>");
    }
    // Client p calls the IOMMU PD on its id p + 1; the others may have a channel to it
    // for notifications, above the clients' ids.
    for p in 0..pds {
        let (iommu_id, pp) = if p < clients { (p + 1, " pp=\"true\"") } else { (pds + 1 + p, "") };
        if p >= clients && rng.below(2) == 0 {
            continue;
        }
        let _ = writeln!(o, "    <channel>");
        let _ = writeln!(o, "        <end pd=\"drv{p}\" id=\"{}\"{pp} />", rng.below(62));
        let _ = writeln!(o, "        <end pd=\"iommu\" id=\"{iommu_id}\" />");
        let _ = writeln!(o, "    </channel>");
    }
    let _ = writeln!(o, "    <iommu pd=\"iommu\" stream_table=\"smmu_strtab\" cmdq=\"smmu_cmdq\" eventq=\"smmu_eventq\" context_descriptors=\"smmu_cds\" table_pool=\"smmu_tables\" />");
    for d in 0..devices {
        let owner = d % pds;
        // Device d's StreamIDs: 8 (d + 1) and, with more than one, the ones after it.
        let more: Vec<String> =
            (1..streams.clamp(1, 8) as u64).map(|k| format!("{:#x}", 8 * (d as u64 + 1) + k)).collect();
        let more = if more.is_empty() { String::new() } else { format!(" streams=\"{}\"", more.join(" ")) };
        let _ = writeln!(o, "    <io_address_space name=\"dev{d}\" peripheral_id=\"{:#x}\" domain_id=\"{}\" owner=\"drv{owner}\" iova_base=\"0x1_0000_0000\" iova_size=\"0x100_0000\"{more} />", 8 * (d + 1), d + 1);
    }
    let mut cap = 0;
    for r in 0..regions {
        let owner = r % pds;
        let owned: Vec<usize> = (0..devices).filter(|d| d % pds == owner).collect();
        if owned.is_empty() {
            continue;
        }
        let devs: Vec<String> = owned.iter().filter(|_| rng.below(2) == 0).map(|d| format!("dev{d}")).collect();
        let devs = if devs.is_empty() { vec![format!("dev{}", owned[0])] } else { devs };
        let perms = ["r", "w", "rw"][rng.below(3) as usize];
        // Sometimes it may be lent to one other client (drivers 0..clients are clients).
        let lend = match rng.below(3) {
            0 => format!(" grant_to=\"drv{}\"", rng.below(clients as u64)),
            _ => String::new(),
        };
        let _ = writeln!(o, "    <dma_capability name=\"cap{cap}\" pd=\"drv{owner}\" mr=\"dma{r}\" size=\"0x1000\" perms=\"{perms}\" devices=\"{}\"{lend} />", devs.join(" "));
        if extra == 0 && rng.below(2) == 0 {
            let _ = writeln!(o, "    <dma_capability name=\"cap{cap}d\" parent=\"cap{cap}\" pd=\"drv{owner}\" size=\"0x1000\" perms=\"{perms}\" devices=\"{}\"{lend} />", devs[0]);
        }
        for k in 0..extra {
            let _ = writeln!(o, "    <dma_capability name=\"cap{cap}x{k}\" parent=\"cap{cap}\" pd=\"drv{owner}\" size=\"0x1000\" perms=\"{perms}\" devices=\"{}\"{lend} />", devs[0]);
        }
        cap += 1;
    }
    // Two grants at a time each: few enough that no client's handle table can be filled
    // by the clients that may lend to it, at any size generated here.
    for p in 0..pds {
        let _ = writeln!(o, "    <dma_quota pd=\"drv{p}\" mappings=\"8\" pages=\"{quota_pages}\" grants=\"2\" />");
    }
    // Some clients have a mapping queue, of any size and share `check` takes, placed by
    // build or at a vaddr clear of every map the generator gives a PD. (Last, so the rest of a
    // description is the same with or without them.)
    for p in 0..clients {
        if rng.below(2) == 0 {
            continue;
        }
        let entries = 1u64 << (1 + rng.below(12));
        let vaddr = match rng.below(3) {
            0 => format!(" vaddr=\"{:#x}\"", 0x2_0000_0000 + p as u64 * 0x100_0000),
            _ => String::new(),
        };
        let share = match rng.below(3) {
            0 => format!(" share=\"{}\"", 2 + rng.below(63)),
            _ => String::new(),
        };
        let _ = writeln!(o, "    <dma_queue pd=\"drv{p}\" entries=\"{entries}\"{vaddr}{share} />");
    }
    o.push_str("</system>\n");
    o
}

/// A valid description (`description`) then bent, seeded, where the DMA reach report's
/// arithmetic meets the Microkit tool's placement: a DMA region's `phys_addr` dropped
/// (the Microkit tool places it), moved into RAM the loader or kernel occupy at boot, or moved
/// to sit right against another region; a 2 MiB page region; a capability over a
/// later part of its region (`offset`). Many are still valid, some are refused (a
/// region now shared, an offset past the region's end): images/reach-differential.sh
/// hands the accepted ones to the Microkit tool and holds its placement against
/// `report`.
pub fn hostile(seed: u64) -> String {
    let pds = 1 + (seed % 5) as usize;
    let regions = 2 + pds;
    let text = description(seed, pds, regions, 1 + pds);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = String::with_capacity(text.len());
    // Each DMA region's pages, as finally written, for a capability's offset inside it.
    let mut pages = [1u64; 8];
    for line in text.lines() {
        let mut line = line.to_string();
        if let Some(r) = dma_region(&line) {
            let phys = format!("phys_addr=\"{:#x}\"", 0x4000_0000 + r as u64 * 0x10_0000);
            line = match rng.below(6) {
                0 => line.replace(&format!(" {phys}"), ""),
                // Where QEMU virt's kernel and initialiser are loaded (which `check` must
                // refuse: the Microkit tool does), or where the loader links itself (RAM
                // the Microkit tool hands out once the loader is done).
                1 => line.replace(
                    &phys,
                    &format!("phys_addr=\"{:#x}\"", 0x6000_0000 + rng.below(2) * 0x1000_0000 + rng.below(64) * 0x1000),
                ),
                // Right after the previous region's last byte (for the first, the page
                // below RAM, in QEMU virt's ECAM window).
                2 => {
                    let after = match r {
                        0 => 0x3fff_f000,
                        _ => 0x4000_0000 + (r as u64 - 1) * 0x10_0000 + pages[r - 1] * 0x1000,
                    };
                    line.replace(&phys, &format!("phys_addr=\"{after:#x}\""))
                }
                3 => {
                    let size =
                        line.split("size=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("0x1000").to_string();
                    line.replace(
                        &format!("size=\"{size}\" {phys}"),
                        &format!(
                            "size=\"0x200000\" page_size=\"0x200000\" phys_addr=\"{:#x}\"",
                            0x8000_0000 + r as u64 * 0x20_0000
                        ),
                    )
                }
                _ => line,
            };
            let size = line.split(" size=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("0x1000");
            pages[r] = u64::from_str_radix(size.trim_start_matches("0x"), 16).unwrap_or(0x1000) / 0x1000;
        } else if let Some(r) = capability_region(&line) {
            if rng.below(2) == 0 {
                let offset = 0x1000 * rng.below(pages[r]);
                line = line.replace(" size=\"0x1000\"", &format!(" offset=\"{offset:#x}\" size=\"0x1000\""));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `r` when `line` is a capability over the generator's DMA region `dma{r}` (not one
/// derived from a parent).
fn capability_region(line: &str) -> Option<usize> {
    let rest = line.split(" mr=\"dma").nth(1)?;
    line.contains("<dma_capability").then_some(())?;
    rest.split('"').next()?.parse().ok()
}

/// `r` when `line` declares the generator's DMA region `dma{r}`.
fn dma_region(line: &str) -> Option<usize> {
    let rest = line.trim_start().strip_prefix("<memory_region name=\"dma")?;
    rest.split('"').next()?.parse().ok()
}

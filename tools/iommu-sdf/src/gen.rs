//! Random valid descriptions, for property tests and benchmarks: every PD maps its own
//! regions, every device has one owner and its own StreamID, capabilities stay inside
//! what their holder maps, quotas hold the static maps, and the page-table pool is big
//! enough. `check` must find nothing wrong with any of them.

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
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A valid description with `pds` driver PDs, `regions` DMA regions and `devices` devices.
pub fn description(seed: u64, pds: usize, regions: usize, devices: usize) -> String {
    let mut rng = Rng(seed | 1);
    let mut o = String::from("<?xml version=\"1.0\"?>\n<system>\n");
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
    let _ = writeln!(o, "    <protection_domain name=\"iommu\" priority=\"250\">");
    for name in ["strtab", "cmdq", "eventq", "cds", "tables"] {
        let _ = writeln!(o, "        <map mr=\"smmu_{name}\" vaddr=\"0x{:x}\" perms=\"rw\" />", 0x300_0000);
    }
    let _ = writeln!(o, "    </protection_domain>");
    for p in 0..pds {
        let _ = writeln!(o, "    <protection_domain name=\"drv{p}\" priority=\"100\">");
        for r in (p..regions).step_by(pds) {
            let _ = writeln!(
                o,
                "        <map mr=\"dma{r}\" vaddr=\"{:#x}\" perms=\"rw\" />",
                0x400_0000 + r as u64 * 0x10_0000
            );
        }
        let _ = writeln!(o, "    </protection_domain>");
    }
    let _ = writeln!(o, "    <iommu pd=\"iommu\" stream_table=\"smmu_strtab\" cmdq=\"smmu_cmdq\" eventq=\"smmu_eventq\" context_descriptors=\"smmu_cds\" table_pool=\"smmu_tables\" />");
    for d in 0..devices {
        let owner = d % pds;
        let _ = writeln!(o, "    <io_address_space name=\"dev{d}\" peripheral_id=\"{:#x}\" domain_id=\"{}\" owner=\"drv{owner}\" iova_base=\"0x1_0000_0000\" iova_size=\"0x100_0000\" />", 8 * (d + 1), d + 1);
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
        let _ = writeln!(o, "    <dma_capability name=\"cap{cap}\" pd=\"drv{owner}\" mr=\"dma{r}\" size=\"0x1000\" perms=\"{perms}\" devices=\"{}\" />", devs.join(" "));
        if rng.below(2) == 0 {
            let _ = writeln!(o, "    <dma_capability name=\"cap{cap}d\" parent=\"cap{cap}\" pd=\"drv{owner}\" size=\"0x1000\" perms=\"{perms}\" devices=\"{}\" />", devs[0]);
        }
        cap += 1;
    }
    for p in 0..pds {
        let _ = writeln!(o, "    <dma_quota pd=\"drv{p}\" mappings=\"8\" pages=\"{quota_pages}\" />");
    }
    o.push_str("</system>\n");
    o
}

//! Quotas and the page-table pool: what the IOMMU PD is sized for.

use crate::model::*;
use crate::problem::{p, Problem};

/// Every quota and sizing rule.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    // Quotas and the page-table pool.
    for q in &sys.quotas {
        if sys.pd(&q.pd).is_none() {
            out.push(p(
                q.line,
                "dma_quota",
                format!(
                    "`{}` is not a protection domain{}",
                    q.pd,
                    did_you_mean(&q.pd, sys.pds.iter().map(|p| p.name.as_str()))
                ),
                "name an existing protection_domain in pd=\"...\"",
            ));
        }
    }
    for pd in &sys.pds {
        let spaces: Vec<&IoSpace> =
            sys.io_spaces.iter().filter(|s| s.owner.as_deref() == Some(pd.name.as_str())).collect();
        let (maps, pages): (u64, u64) = spaces
            .iter()
            .flat_map(|s| s.iomaps.iter())
            .fold((0, 0), |(n, pg), m| (n + 1, pg + sys.region(&m.mr).map(|r| r.size.div_ceil(PAGE)).unwrap_or(0)));
        if let Some(q) = sys.quotas.iter().find(|q| q.pd == pd.name) {
            if maps > q.mappings || pages > q.pages {
                out.push(p(
                    q.line,
                    "dma_quota",
                    format!(
                        "`{}`'s static iomaps need {maps} mappings and {pages} pages; its quota allows {} and {}",
                        pd.name, q.mappings, q.pages
                    ),
                    "raise the quota or remove iomaps",
                ));
            }
        } else if sys.iommu.is_some() && sys.caps.iter().any(|c| c.pd == pd.name) {
            out.push(p(
                pd.line,
                "protection_domain",
                format!("`{}` holds DMA capabilities but has no dma_quota: what it can map is unbounded", pd.name),
                format!("add <dma_quota pd=\"{}\" mappings=\"...\" pages=\"...\"/>", pd.name),
            ));
        }
    }
    if let Some(iommu) = &sys.iommu {
        if sys.pd(&iommu.pd).is_none() {
            out.push(p(
                iommu.line,
                "iommu",
                format!("`{}` is not a protection domain", iommu.pd),
                "name the IOMMU PD in pd=\"...\"",
            ));
        }
        for (_, name) in &iommu.private {
            if sys.region(name).is_none() {
                out.push(p(
                    iommu.line,
                    "iommu",
                    format!("memory region `{name}` does not exist"),
                    "declare it with <memory_region>",
                ));
            }
        }
        // Worst case with 4 KiB pages and a 48-bit IOVA space: a root per device, and each
        // page of quota in its own level-1, level-2 and level-3 table.
        let worst = table_pool_pages(sys);
        if let Some(pool) = sys.region(&iommu.table_pool) {
            let have = pool.size / PAGE;
            if have < worst {
                out.push(p(
                    iommu.line,
                    "iommu",
                    format!(
                        "the page-table pool `{}` has {have} pages; the quotas allow mappings that need up to {worst}",
                        pool.name
                    ),
                    format!("make `{}` at least {:#x} bytes, or lower the quotas", pool.name, worst * PAGE),
                ));
            }
        }
    }
}

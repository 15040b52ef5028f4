//! What the IOMMU PD's program needs to run at all: its FPU, and a stack as large as its
//! bring-up takes. Without either it faults at boot, and where that is before the SMMU is
//! set up (the stack), every stream is as firmware or reset left it: on QEMU 7.2, whose
//! SMMUv3 has no GBPA, bypassing.

use crate::model::*;
use crate::plumbing::IOMMU_PD_STACK;
use crate::problem::{p, Problem};

/// Every rule on what the IOMMU PD `iommu` runs with.
pub fn check(iommu: &ProtectionDomain, out: &mut Vec<Problem>) {
    // Without its FPU, seL4 makes every floating-point or SIMD instruction of the IOMMU PD a
    // fault, and its program (Rust for AArch64 with NEON, pds/targets) has them: in
    // initialising its state, in memset, in formatting its lines. It would fault and serve
    // nothing, its streams as far as it had set them up.
    if !iommu.fpu {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` runs with fpu=\"false\": seL4 would trap its every floating-point and SIMD instruction as a fault, and its program, built for AArch64 with NEON, has them (initialising its state, memset, formatting): it would fault and serve nothing",
                iommu.name
            ),
            "remove fpu=\"false\" from the IOMMU PD",
        ));
    }
    if iommu.stack_size_given && iommu.stack_size < IOMMU_PD_STACK {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` has a stack of {:#x} bytes, and its bring-up takes more than 0x20000: booted with 128 KiB it overflowed in setting the SMMU up, before any stream aborted, and faulted",
                iommu.name, iommu.stack_size
            ),
            format!("give the IOMMU PD stack_size=\"{IOMMU_PD_STACK:#x}\" or more, or leave stack_size out (build then writes {IOMMU_PD_STACK:#x})"),
        ));
    }
}

//! What the IOMMU PD's program needs to run at all: its FPU, and a stack as large as its
//! bring-up takes. Without either it faults at boot, and where that is before the SMMU is
//! set up (the stack), every stream is as firmware or reset left it: on QEMU 7.2, whose
//! SMMUv3 has no GBPA, bypassing. And the symbols the Microkit tool patches in it must be
//! its program's own.

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
    // `path_for_symbols` has the Microkit tool take the addresses it patches from another
    // file (tool/microkit/src/elf.rs, `from_split_paths`) and write them into this
    // program's segments. Nothing ties that file to the program: a symbol table of
    // another build (or made up) puts `iommu_paddr_*`, `smmu_*` or `fault_rings` on any
    // word of the IOMMU PD's image, its policy tables included, while the variables the
    // program reads stay 0 (a region's physical address 0: its DMA reaches address 0 +
    // offset, which no report lists). The rules on symbols hold the file's table, not the
    // program's, so they cannot see it.
    if let Some((program, file)) = iommu.program.as_ref().and_then(|pr| Some((pr, pr.symbols_path.as_deref()?))) {
        out.push(p(
            program.line,
            "program_image",
            format!(
                "the IOMMU PD `{}` takes its symbols from `{file}` (path_for_symbols), not from its program `{}`: the Microkit tool writes its patches at that file's addresses into the program, and nothing shows they are the program's variables (another table puts a region's physical address over its policy, and leaves the address it reads 0)",
                iommu.name, program.path
            ),
            "remove path_for_symbols from the IOMMU PD's <program_image>, and give its unstripped program as path",
        ));
    }
}

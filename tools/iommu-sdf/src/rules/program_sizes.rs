//! How much memory the programs may take, together, for the SDK's Microkit tool to build an
//! image of them. On Arm it packs every PD's loadable segments, page by page and `.bss`
//! included, into the capDL initialiser's image (tool/microkit/src/main.rs,
//! `pack_spec_into_initial_task`; `capdl_initialiser.image_bound()` is its size), which the
//! loader copies into one contiguous range of RAM above the kernel
//! (`available_memory.allocate_from(initial_task_size, kernel_boot_region.end)`). It does
//! not keep that range off the loader itself: an image reaching the loader's link address
//! makes it panic (loader.rs, `check_non_overlapping`: "Overlapping regions", as a 256 MiB
//! `.bss` does on qemu_virt_aarch64); a larger one it refuses ("cannot allocate memory for
//! the initialiser"), or it fails allocating the image on the host (a 64 GiB `.bss`).
//!
//! The SDK's kernel and loader ELFs give the room between them: qemu_virt_aarch64 0x6000_0000
//! to 0x7000_0000 (256 MiB), tqma8xqp1gb 0x8020_0000 to 0x9000_0000 (254 MiB), zcu102 0 to
//! 0x4000_0000 (1 GiB). `PROGRAMS_MAX` is a quarter of the least of them, leaving the rest
//! for the kernel's boot region, the initialiser's code, the capDL spec and the monitor
//! (the SDK's tool built a 192 MiB `.bss` on qemu_virt_aarch64, and a 64 MiB one on each of
//! the three boards). It is a bound on the programs only: the spec grows with the
//! description's objects (a frame each page of every memory region), which this rule does
//! not measure. A program not read (no search path) is not counted.

use crate::model::*;
use crate::problem::{p, Problem};

/// The most memory the loadable segments of every PD's program may take together, in bytes.
pub const PROGRAMS_MAX: u64 = 64 << 20;

pub fn check(sys: &System, out: &mut Vec<Problem>) {
    let mut total: u128 = 0;
    for pd in &sys.pds {
        let Some(program) = &pd.program else { continue };
        let Some(segments) = &program.segments else { continue };
        // Each PD gets frames of its own, so a program two PDs run counts twice.
        let own: u128 = segments.iter().map(|&(start, end)| u128::from(end - start)).sum();
        total += own;
        if total > u128::from(PROGRAMS_MAX) {
            out.push(p(
                program.line,
                "program_image",
                format!(
                    "`{}`'s program `{}` takes {own:#x} bytes of memory (its loadable segments, `.bss` included), which brings the programs' total to {total:#x} bytes, over {PROGRAMS_MAX:#x} (64 MiB): the Microkit tool copies every program's pages into the initialiser's image, which must fit in RAM between the kernel and the loader (256 MiB on qemu_virt_aarch64, less on other boards); a larger one makes it panic or refuse the description",
                    pd.name, program.path
                ),
                "make the program's large buffers a <memory_region> mapped into the PD (its frames are allocated at boot, not copied into the image), or split the work over fewer or smaller programs",
            ));
            return;
        }
    }
}

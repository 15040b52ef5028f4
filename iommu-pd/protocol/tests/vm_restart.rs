//! The Linux guest's VMM boots a guest again on its stopped disk (`pds/linux-vmm/restart.c`,
//! the order `vm_restart` runs its steps in), on the host: `tests/c/restart_steps.c` stands in
//! for each step (loading the guest's images, RESUME, the disk decoding again, starting the
//! guest, STOP) and fails one at a time. Whenever the guest does not run, its disk must be
//! left stopped: blocked, with no page of the guest's RAM mapped for it.

mod common;

fn run() -> Vec<String> {
    common::run_c("vm-restart", &["tests/c/restart_steps.c", "../../pds/linux-vmm/restart.c"], &["../../pds/linux-vmm"])
}

/// Before, RESUME came first and the images were loaded after it: a guest whose images did
/// not fit its RAM (or whose device tree had no `boot=first` to replace) left the disk
/// resumed, the guest's RAM mapped for it, for a guest that never started; so did a guest
/// libvmm could not start. Now the images are loaded first, while the disk is stopped, and
/// a start that fails stops the disk again.
#[test]
fn a_guest_that_cannot_be_booted_again_leaves_its_disk_stopped() {
    let lines = run();
    let want = [
        "failing none: steps load resume decoding start; returns true; disk resumed; guest running",
        "failing load: steps load; returns false; disk stopped; guest not running",
        "failing resume: steps load resume; returns false; disk stopped; guest not running",
        "failing decoding: steps load resume decoding; returns false; disk stopped; guest not running",
        "failing start: steps load resume decoding start stop; returns false; disk stopped; guest not running",
    ];
    assert_eq!(lines, want);
}

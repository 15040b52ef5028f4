/*
 * The VMM of images/linux-guest.xml, on libvmm 0.2.0: it boots Debian's arm64 Linux (the
 * kernel, our device tree and our initramfs, carried in this PD's image) in the virtual
 * machine `linux`, and passes the virtio-blk disk 01:00.0 (behind the root port 00:08.0)
 * through to it:
 *   - configuration space: trapped (ecam_trap.c) and emulated (pds/vpci, shared with
 *     pds/c-vmm) over the IOMMU PD's CONFIG_READ/CONFIG_WRITE of this PD's own device,
 *     BARs virtual;
 *   - its registers: the VM maps the real BARs' window at the guest-physical window the
 *     guest's device tree gives its host bridge;
 *   - its interrupt: INTx, a Microkit interrupt of this PD injected into the guest through
 *     libvmm's virtual GIC and acknowledged when the guest EOIs it (no MSI: the guest has
 *     no MSI controller, and the GIC's doorbell would have to be in the device's SMMU
 *     domain);
 *   - its DMA: the IOMMU PD maps the guest's RAM at guest-physical addresses for it (from
 *     the description), and nothing else. Its faults come to this PD, the device's owner,
 *     in its fault ring, and are printed.
 *
 * Its lifecycle, as a VMM on libvmm and vfio-pci would have it: when the guest reboots
 * (PSCI SYSTEM_RESET), the VMM stops the vCPU and STOPs the disk: the IOMMU PD blocks it,
 * confirmed, turns its Bus Master off and resets the function (FLR) with its BARs put
 * back. The VMM then checks that the stopped disk reaches nothing of the guest's RAM
 * (stopped_disk.c), resets the vCPU, loads the guest's images again, RESUMEs the disk and
 * boots Linux a second time, with `boot=again` on its command line instead of `boot=first`
 * (restart.c: a guest that cannot be loaded or started leaves its disk stopped). A guest
 * that powers off, PSCI SYSTEM_OFF, is stopped the same way and not booted again.
 * A guest fault libvmm cannot handle (an access to a guest-physical address nothing
 * emulates, say) stops the VM the same way: libvmm leaves the vCPU waiting on it forever,
 * and without the STOP the disk would go on reading and writing a guest that no longer
 * runs. This image's second guest does that; the VMM then boots a third (`boot=third`).
 * When that guest powers off, the VMM crashes on purpose, the disk mapped and
 * running: the IOMMU PD, its parent, must do to the disk what STOP does.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <microkit.h>
#include <libvmm/libvmm.h>
#include <sddf/util/printf.h>

/* libvmm's own virtual distributor, as its vgic_v2.c includes it (for vtimer_enabled). */
#include <libvmm/arch/aarch64/vgic/vgic.h>
#include <libvmm/arch/aarch64/vgic/virq.h>
#include <libvmm/arch/aarch64/vgic/vgic_v2.h>
#include <libvmm/arch/aarch64/vgic/vdist.h>

#include <libvmm/arch/aarch64/hsr.h>

#include "iommu_client.h"
#include "vmm_iommu.h"
#include "ecam_trap.h"
#include "stopped_disk.h"
#include "restart.h"

#define GUEST_RAM_START_GPA 0x40000000ul
#define GUEST_RAM_SIZE 0x8000000ul
#define GUEST_INIT_RAM_DISK_GPA 0x47000000ul
#define GUEST_DTB_GPA 0x47f00000ul

/* The guest's host bridge (its device tree's pcie@3f000000). */
#define GUEST_ECAM_GPA 0x3f000000ul
#define GUEST_ECAM_SIZE 0x100000ul
#define GUEST_BAR_WINDOW_GPA 0x10000000ul
/* Where the IOMMU PD's BAR plan puts the disk's BARs (the description's blk_bar). */
#define DISK_BAR_WINDOW_PA 0x10200000ul
#define BAR_WINDOW_SIZE 0x100000ul

#define IOMMU VMM_IOMMU_CHANNEL
#define SERIAL_IRQ_CH 1
#define SERIAL_IRQ 33
#define DISK_IRQ_CH 2
/* QEMU virt: the disk's INTA is the root port's, slot 8's INTA, which is SPI 3; the
 * guest's device tree routes its 00:00.0's INTA to the same SPI. */
#define DISK_IRQ 35

extern char _guest_kernel_image[], _guest_kernel_image_end[];
extern char _guest_initrd_image[], _guest_initrd_image_end[];
extern char _guest_dtb_image[], _guest_dtb_image_end[];

uintptr_t guest_ram_vaddr;
uintptr_t fault_ring;
uintptr_t disk_regs;

static uint64_t next_fault;
static uint64_t disk_irqs;

/* PSCI 0.2's SYSTEM_OFF and SYSTEM_RESET, as Linux calls them (SMC32 fast calls: its
 * `poweroff -f` and `reboot -f`). */
#define PSCI_SYSTEM_OFF_FN 0x84000008ul
#define PSCI_SYSTEM_RESET_FN 0x84000009ul

static bool vtimer_held;

/* Which boot of the guest this is; its command line says so (`boot=first`, `boot=again`,
 * `boot=third`: all ten characters, as load_guest needs).
 * In .data, so that a restart of this PD by the IOMMU PD (after its crash) sees it. */
static int boot __attribute__((section(".data"))) = 0;
static uintptr_t kernel_pc;

/* The guest's images loaded into its RAM (again), the command line's boot flag set. */
static bool load_guest(const char *flag)
{
    kernel_pc = linux_setup_images(GUEST_RAM_START_GPA, (uintptr_t)_guest_kernel_image,
                                   _guest_kernel_image_end - _guest_kernel_image, (uintptr_t)_guest_dtb_image,
                                   GUEST_DTB_GPA, _guest_dtb_image_end - _guest_dtb_image,
                                   (uintptr_t)_guest_initrd_image, GUEST_INIT_RAM_DISK_GPA,
                                   _guest_initrd_image_end - _guest_initrd_image);
    if (!kernel_pc) {
        printf("vmm: the guest's images do not fit its RAM; not started\n");
        return false;
    }
    /* The device tree's bootargs end "boot=first" (linux.dts); the same length replaces it,
     * so the tree's structure is untouched. */
    char *dtb = (char *)(guest_ram_vaddr + (GUEST_DTB_GPA - GUEST_RAM_START_GPA));
    size_t n = _guest_dtb_image_end - _guest_dtb_image;
    const char *at = "boot=first";
    for (size_t i = 0; i + 10 <= n; i++) {
        size_t k = 0;
        while (k < 10 && dtb[i + k] == at[k]) {
            k++;
        }
        if (k == 10) {
            for (k = 0; k < 10; k++) {
                dtb[i + k] = flag[k];
            }
            return true;
        }
    }
    printf("vmm: the guest's device tree has no boot=first in its bootargs; not started\n");
    return false;
}

void init(void)
{
    if (boot != 0) {
        /* Restarted by the IOMMU PD after this PD crashed: libvmm 0.2.0 keeps its state in
         * statics that a restart does not reset, so the guest is not booted again. */
        printf("vmm: restarted by the IOMMU PD after a crash; the guest is not started again\n");
        return;
    }
    arch_guest_init_t args = {
        .num_vcpus = 1,
        .num_guest_ram_regions = 1,
        .guest_ram_regions = { (struct guest_ram_region) {
            .gpa_start = GUEST_RAM_START_GPA, .size = GUEST_RAM_SIZE, .vmm_vaddr = (void *)guest_ram_vaddr } },
    };
    if (!guest_init(args)) {
        printf("vmm: could not initialise the guest; not started\n");
        return;
    }
    struct vpci_config pci = {
        .iommu = IOMMU,
        .device = VMM_DEV_DISK,
        .ecam_gpa = GUEST_ECAM_GPA,
        .ecam_size = GUEST_ECAM_SIZE,
        .bar_window_pa = DISK_BAR_WINDOW_PA,
        .bar_window_gpa = GUEST_BAR_WINDOW_GPA,
        .bar_window_size = BAR_WINDOW_SIZE,
    };
    if (!ecam_trap_init(&pci)) {
        printf("vmm: the disk cannot be passed through; the guest is not started\n");
        return;
    }
    struct stopped_disk disk = {
        .iommu = IOMMU,
        .device = VMM_DEV_DISK,
        .regs_vaddr = disk_regs,
        .window_pa = DISK_BAR_WINDOW_PA,
        .ram_gpa = GUEST_RAM_START_GPA,
        .ram_vaddr = guest_ram_vaddr,
    };
    if (!stopped_disk_find(&disk) || !load_guest("boot=first")) {
        return;
    }
    if (!virq_register_passthrough(ARM_GIC_IRQ_ROUTE(GUEST_BOOT_VCPU_ID, SERIAL_IRQ), SERIAL_IRQ_CH) ||
        !virq_register_passthrough(ARM_GIC_IRQ_ROUTE(GUEST_BOOT_VCPU_ID, DISK_IRQ), DISK_IRQ_CH)) {
        printf("vmm: could not route the guest's interrupts; not started\n");
        return;
    }
    printf("vmm: starting Linux (0x%lx bytes) with its initramfs (0x%lx bytes) in guest RAM at 0x%lx\n",
           (uint64_t)(_guest_kernel_image_end - _guest_kernel_image),
           (uint64_t)(_guest_initrd_image_end - _guest_initrd_image), GUEST_RAM_START_GPA);
    boot = 1;
    guest_start(kernel_pc, GUEST_DTB_GPA, GUEST_INIT_RAM_DISK_GPA);
}

/* The disk's DMA faults, as the IOMMU PD routed them to this PD's ring: printed, with
 * where each lies against the guest's RAM. The guest runs on. A SERVICE_FAILED record is no
 * fault of the disk's (its stream and addresses are 0): the failure is told once, from the
 * ring's flag, which a ring too full for the record gets too. Nor is a QUARANTINED_AT_OVERFLOW
 * record, printed as the quarantine it is. */
static void take_faults(void)
{
    struct iommu_fault_record out[8];
    unsigned n;
    while ((n = iommu_take_faults((const volatile struct iommu_fault_ring *)fault_ring, IOMMU, &next_fault, out, 8))) {
        for (unsigned i = 0; i < n; i++) {
            if (out[i].kind == IOMMU_FAULT_KIND_SERVICE_FAILED) {
                continue;
            }
            if (out[i].kind == IOMMU_FAULT_KIND_QUARANTINED_AT_OVERFLOW) {
                printf("vmm: told: the disk (device %u) QUARANTINED at an event-queue overflow; RESUME it when "
                       "ready\n",
                       out[i].device);
                continue;
            }
            bool in_ram = out[i].iova >= GUEST_RAM_START_GPA && out[i].iova < GUEST_RAM_START_GPA + GUEST_RAM_SIZE;
            printf("vmm: told: the disk's DMA (stream 0x%x) %s at iova 0x%lx..=0x%lx faulted (%s the guest's RAM); "
                   "the guest runs on\n",
                   out[i].stream, out[i].write ? "write" : "read", out[i].iova, out[i].iova_last,
                   in_ram ? "inside" : "outside");
        }
        struct vpci_stats st = vpci_stats();
        printf("vmm: vpci so far: %u reads and %u writes of the disk's configuration; of the writes, %u refused by the IOMMU PD, "
               "%u to BARs kept virtual; %u accesses to other functions\n",
               st.reads, st.writes, st.refused, st.bar_writes, st.other_functions);
    }
    static bool told_failed;
    if (!told_failed && iommu_service_failed((const volatile struct iommu_fault_ring *)fault_ring)) {
        told_failed = true;
        const volatile struct iommu_fault_ring *r = (const volatile struct iommu_fault_ring *)fault_ring;
        printf("vmm: told: the IOMMU service FAILED: no call (STOP, RESUME, CONFIG_WRITE) is served; %s\n",
               iommu_service_failed_dma_stopped(r)
                   ? "the disk's DMA aborts from now on"
                   : "the disk's DMA is NOT KNOWN TO BE STOPPED: it may still reach what it had mapped");
    }
}

void notified(microkit_channel ch)
{
    switch (ch) {
    case IOMMU:
        take_faults();
        break;
    case SERIAL_IRQ_CH:
    case DISK_IRQ_CH:
        if (ch == DISK_IRQ_CH && disk_irqs++ == 0) {
            printf("vmm: the disk's first INTx, injected into the guest as SPI %d\n", DISK_IRQ - 32);
        }
        if (!virq_handle_passthrough(ch)) {
            printf("vmm: an interrupt on channel %u dropped\n", ch);
        }
        break;
    default:
        printf("vmm: unexpected notification on channel %u\n", ch);
    }
}

/*
 * The virtual timer's interrupt before the guest has enabled it. libvmm 0.2.0 drops it then
 * and acknowledges it (fault_handle_vppi_event), which unmasks it; a timer Linux armed just
 * before enabling its interrupt (arch_timer_starting_cpu does it in that order) is still
 * asserted, so it comes back at once, forever, and the vCPU never reaches the write that
 * would enable it (1 boot in 4 on QEMU here, "VPPI IRQ 27 dropped" without end). Held
 * instead: left masked until the guest enables it in the virtual distributor, then
 * injected; the guest's EOI acknowledges it as libvmm's own path does.
 */
#define PPI_VTIMER 27
extern vgic_t vgic;

static bool vtimer_enabled(size_t vcpu)
{
    return vgic_dist_is_enabled(vgic_get_dist(vgic.registers)) && is_enabled(&vgic, PPI_VTIMER, vcpu);
}

/* Stop the VM: its vCPU, and its disk through the IOMMU PD (STOP: blocked at the SMMU,
 * confirmed, no page of the guest's RAM left mapped for it; its Bus Master off and the
 * function reset by FLR, its BARs put back). What this VMM does when the guest powers off,
 * and what a VMM that decides to stop its guest calls. False, said why, if the IOMMU PD
 * refused: the vCPU stays stopped. */
static bool vm_stop(size_t vcpu)
{
    microkit_vcpu_stop(vcpu);
    uint64_t function = 0;
    uint64_t err = iommu_stop(IOMMU, VMM_DEV_DISK, &function);
    if (err != 0) {
        printf("vmm: STOP of the disk refused: %s; the guest stays stopped\n", iommu_strerror(err));
        return false;
    }
    printf("vmm: VM stopped, and its disk with it (confirmed): %s, %s, %s",
           function & IOMMU_STOP_FUNCTION_OFF ? "bus master off" : "BUS MASTER NOT OFF",
           function & IOMMU_STOP_FLR        ? "reset by FLR"
           : function & IOMMU_STOP_PM_RESET ? "reset by D3hot and back"
                                            : "NOT RESET",
           function & IOMMU_STOP_RESTORED ? "BARs restored" : "BARS NOT RESTORED");
    return true;
}

/* The steps of vm_restart (restart.c runs them in an order that leaves the disk stopped
 * whenever the guest does not run). */
static size_t restart_vcpu;
static const char *restart_flag;

/* What libvmm 0.2.0 lets a VMM reset (its guest_restart is a stub): the vCPU's system
 * registers, and this VMM's hold on the timer's interrupt (libvmm's virtual distributor is
 * left as it is: the guest's GIC driver sets it up again at boot); then the images loaded
 * again with `flag` on the command line. */
static bool restart_load(const char *flag)
{
    vtimer_held = false;
    vcpu_reset(restart_vcpu);
    return load_guest(flag);
}

/* RESUME: the guest's RAM mapped for the disk again; its Bus Master stays off until the
 * guest's driver turns it on. */
static uint64_t restart_resume(void)
{
    uint64_t err = iommu_resume(IOMMU, VMM_DEV_DISK);
    if (err != 0) {
        printf("vmm: RESUME of the disk refused: %s; the guest stays stopped\n", iommu_strerror(err));
    }
    return err;
}

static bool restart_start(void)
{
    printf("vmm: disk resumed; Linux loaded again and started with %s\n", restart_flag);
    if (!guest_start(kernel_pc, GUEST_DTB_GPA, GUEST_INIT_RAM_DISK_GPA)) {
        printf("vmm: the guest could not be started; its disk is stopped again\n");
        return false;
    }
    return true;
}

static bool restart_stop(void)
{
    bool stopped = vm_stop(restart_vcpu);
    if (stopped) {
        printf("\n");
    }
    return stopped;
}

/* Boot the guest again on its stopped disk (restart.c): the images loaded, RESUME, the
 * guest's view of configuration space reset and the disk decoding its BARs again
 * (vpci_resumed: the disk stopped again if it cannot decode), the guest started; whenever
 * a step fails the disk is left stopped. */
static bool vm_restart(size_t vcpu, const char *flag)
{
    static const struct restart_steps steps = {
        .load = restart_load,
        .resume = restart_resume,
        .decoding = vpci_resumed,
        .start = restart_start,
        .stop = restart_stop,
    };
    restart_vcpu = vcpu;
    restart_flag = flag;
    return vm_restart_steps(&steps, flag);
}

/* The guest ended its run: it powered off (PSCI SYSTEM_OFF) or asked for a reset (PSCI
 * SYSTEM_RESET, its `reboot`). libvmm 0.2.0 ignores SYSTEM_RESET, returning to the guest
 * with its disk running and mapped and telling the VMM nothing, so both are taken here
 * first: the VM is stopped with its disk (STOP: blocked, reset by FLR), the stopped disk
 * checked to reach nothing, and a reset boots Linux again on it; a power-off leaves it
 * stopped. This image's choreography: the first boot reboots; the second faults where
 * libvmm cannot help (guest_faulted); the third powers off and the VMM crashes on purpose,
 * the disk still running. */
static void guest_ended(size_t vcpu, bool reset)
{
    microkit_vcpu_stop(vcpu);
    uint8_t left = stopped_disk_status();
    printf("vmm: the guest %s after boot %d: its vCPU is stopped\n",
           reset ? "asked for a reset (PSCI SYSTEM_RESET)" : "powered off (PSCI SYSTEM_OFF)", boot);
    /* Linux resets the device when it shuts down (virtio status 0): the VMM sets it to
     * ACKNOWLEDGE, so that only a reset of the function can take it back to 0. */
    uint8_t before = stopped_disk_mark();
    if (boot >= 3) {
        /* As a buggy VMM would, with the disk passed through, mapped and its function
         * set up: the IOMMU PD, its parent, must take all of it away. */
        printf("vmm: now crashing, with the disk mapped, its Command 0x%x and virtio status 0x%x\n",
               stopped_disk_command(), before);
        *(volatile uint64_t *)0xdead0000ul = 0;
    }
    if (!vm_stop(vcpu)) {
        return;
    }
    printf("; virtio status 0x%x before the STOP (the guest's shutdown left 0x%x)\n", before, left);
    stopped_disk_reaches_nothing();
    if (!reset) {
        printf("vmm: the VM stays stopped, its disk with it\n");
        return;
    }
    boot = 2;
    vm_restart(vcpu, "boot=again");
}

/* libvmm could not handle a fault of the guest's (it said why, and left the vCPU waiting on
 * it, unanswered): the guest runs no more, so its disk must not either. The VM is stopped
 * with its disk (STOP: blocked, confirmed, the function reset) and stays stopped; this
 * image's choreography then boots a third guest, to go on with its test. */
static void guest_faulted(size_t vcpu)
{
    microkit_vcpu_stop(vcpu);
    printf("vmm: libvmm could not handle the guest's fault after boot %d: its vCPU is stopped\n", boot);
    if (!vm_stop(vcpu)) {
        return;
    }
    printf("; after the guest's unhandled fault\n");
    if (boot == 2) {
        boot = 3;
        vm_restart(vcpu, "boot=third");
    }
}

seL4_Bool fault(microkit_child child, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo)
{
    if (microkit_msginfo_get_label(msginfo) == seL4_Fault_VCPUFault &&
        HSR_EXCEPTION_CLASS(microkit_mr_get(seL4_VCPUFault_HSR)) == HSR_SMC_64_EXCEPTION) {
        seL4_UserContext regs;
        if (seL4_TCB_ReadRegisters(BASE_VM_TCB_CAP + child, false, 0, SEL4_USER_CONTEXT_SIZE, &regs) ==
                seL4_NoError &&
            ((regs.x0 & 0xffffffff) == PSCI_SYSTEM_OFF_FN || (regs.x0 & 0xffffffff) == PSCI_SYSTEM_RESET_FN)) {
            /* No reply: the vCPU stays stopped, or was restarted at the new kernel's entry. */
            guest_ended(child, (regs.x0 & 0xffffffff) == PSCI_SYSTEM_RESET_FN);
            return seL4_False;
        }
    }
    if (microkit_msginfo_get_label(msginfo) == seL4_Fault_VPPIEvent &&
        microkit_mr_get(seL4_VPPIEvent_IRQ) == PPI_VTIMER && !vtimer_enabled(child)) {
        if (!vtimer_held) {
            printf("vmm: the guest's timer fired before the guest enabled its interrupt: held until it does\n");
        }
        vtimer_held = true;
        *reply_msginfo = microkit_msginfo_new(0, 0);
        return seL4_True;
    }
    if (!fault_handle(child, msginfo)) {
        guest_faulted(child);
        return seL4_False;
    }
    if (vtimer_held && vtimer_enabled(child)) {
        vtimer_held = false;
        if (!vgic_inject_irq(child, PPI_VTIMER)) {
            microkit_vcpu_arm_ack_vppi(child, PPI_VTIMER);
        }
    }
    *reply_msginfo = microkit_msginfo_new(0, 0);
    return seL4_True;
}

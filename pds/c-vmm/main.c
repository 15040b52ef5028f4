/*
 * The VMM of images/vm-passthrough.xml: it runs one guest (pds/vm-guest) in the virtual
 * machine `guest`, to which the edu device 00:02.0 is passed through. It loads the guest
 * into the guest's RAM and starts its vCPU at EL1; the guest drives the device and stops
 * (a fault at an address that is not its memory). The VMM runs it three times:
 *   1. as given: it reports what the guest's DMA reached;
 *   2. after stopping the VM and STOPping its device (the IOMMU PD confirms the device
 *      reaches nothing): the guest, run again, must find its DMA reaching nothing;
 *   3. after RESUME of the device: its DMA reaches the guest's RAM again.
 * Then it crashes on purpose. As the device's owner it is the IOMMU PD's client and
 * child: the device's faults come to it in its fault ring, and its crash takes the
 * device's access away.
 */
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_print.h"

#include "../vm-guest/mailbox.h"

#define IOMMU 0
#define GUEST 0
/* The passed-through device, as the IOMMU PD numbers the VMM's devices. */
#define DEVICE 0

/* Which run of the guest this is (see the top). */
enum run { AS_GIVEN, DEVICE_STOPPED, DEVICE_RESUMED };
static enum run run;

uintptr_t guest_ram_vaddr __attribute__((section(".data")));
uintptr_t guest_ram_paddr __attribute__((section(".data")));
uintptr_t fault_ring __attribute__((section(".data")));

/* The guest's image, built from pds/vm-guest and linked at GUEST_RAM_GPA. */
extern const uint8_t guest_image[], guest_image_end[];
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global guest_image\n"
        "guest_image:\n"
        ".incbin \"vm-guest.bin\"\n"
        ".global guest_image_end\n"
        "guest_image_end:\n"
        ".previous\n");

static uint64_t next_fault;

/* The mailbox at the top of guest RAM, as the VMM maps it. */
static volatile struct mailbox *mailbox(void)
{
    return (volatile struct mailbox *)(guest_ram_vaddr + (MAILBOX_GPA - GUEST_RAM_GPA));
}

/* The vCPU's SCTLR_EL1 as seL4 first gave it (MMU off): a guest started again starts as
 * from reset, not with the page tables its last run turned on. */
static seL4_Word reset_sctlr;

/* Clear what the guest reports and start its vCPU at its entry, EL1h with interrupts
 * masked: the guest is a kernel of its own. */
static void start_guest(void)
{
    microkit_vcpu_arm_write_reg(GUEST, seL4_VCPUReg_SCTLR, reset_sctlr);
    volatile struct mailbox *mb = mailbox();
    mb->ram_paddr = guest_ram_paddr;
    mb->sctlr = 0;
    mb->exception_esr = 0;
    mb->exception_far = 0;
    mb->exception_elr = 0;
    mb->vendor_device = 0;
    mb->reached_ram = 0;
    mb->host_paddr_blocked = 0;
    mb->done = 0;
    seL4_UserContext ctxt = {0};
    ctxt.pc = GUEST_RAM_GPA;
    ctxt.spsr = 0x3c5;
    seL4_Error err = seL4_TCB_WriteRegisters(BASE_VM_TCB_CAP + GUEST, seL4_True, 0, 3 /* pc, sp, spsr */, &ctxt);
    if (err != seL4_NoError) {
        microkit_dbg_puts("vmm: could not start the guest\n");
    }
}

void init(void)
{
    volatile uint8_t *ram = (volatile uint8_t *)guest_ram_vaddr;
    uint64_t n = (uint64_t)(guest_image_end - guest_image);
    if (n > GUEST_IMAGE_MAX) {
        microkit_dbg_puts("vmm: the guest's image is larger than its place in guest RAM; not started\n");
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        ram[i] = guest_image[i];
    }
    reset_sctlr = microkit_vcpu_arm_read_reg(GUEST, seL4_VCPUReg_SCTLR);
    start_guest();
    microkit_dbg_puts("vmm: guest loaded at guest-physical 0x20000000, started\n");
}

/* After the IOMMU PD answered `err` to STOP or RESUME: say so, and on success start the
 * guest's next run. The vCPU stays stopped either way until then (no fault reply). */
static seL4_Bool run_again(uint64_t err, const char *refused, const char *done, enum run next)
{
    if (err != 0) {
        microkit_dbg_puts(refused);
        put_hex(err);
        microkit_dbg_puts("\n");
        return seL4_False;
    }
    microkit_dbg_puts(done);
    run = next;
    start_guest();
    return seL4_False;
}

static void report(void)
{
    volatile struct mailbox *mb = mailbox();
    if (!mb->done) {
        microkit_dbg_puts("vmm: the guest stopped before it finished; its exception: ESR ");
        put_hex(mb->exception_esr);
        microkit_dbg_puts(" FAR ");
        put_hex(mb->exception_far);
        microkit_dbg_puts(" ELR ");
        put_hex(mb->exception_elr);
        microkit_dbg_puts("\n");
        return;
    }
    microkit_dbg_puts((mb->sctlr & 1) ? "vmm: the guest runs at EL1 with its own page tables (SCTLR_EL1 "
                                      : "vmm: the guest's MMU is OFF (SCTLR_EL1 ");
    put_hex(mb->sctlr);
    microkit_dbg_puts(")\n");
    microkit_dbg_puts("vmm: the guest found device ");
    put_hex(mb->vendor_device);
    microkit_dbg_puts(" through ECAM\n");
    microkit_dbg_puts(mb->reached_ram ? "vmm: guest DMA by guest-physical address to and from its RAM: bytes right\n"
                                      : "vmm: guest DMA by guest-physical address FAILED\n");
    microkit_dbg_puts(mb->host_paddr_blocked ? "vmm: guest DMA at its RAM's host-physical address: blocked\n"
                                             : "vmm: guest DMA at its RAM's host-physical address LANDED\n");
}

seL4_Bool fault(microkit_child child, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo)
{
    (void)msginfo;
    (void)reply_msginfo;
    microkit_dbg_puts(child == GUEST ? "vmm: the guest stopped at guest-physical " : "vmm: an unknown vCPU faulted at ");
    put_hex(seL4_GetMR(seL4_VMFault_Addr));
    microkit_dbg_puts("\n");
    microkit_vcpu_stop(child);
    volatile struct mailbox *mb = mailbox();
    switch (run) {
    case AS_GIVEN:
        report();
        /* The VM is stopped: before its memory can be anything else's, its device must
         * reach none of it. STOP answers once the IOMMU confirmed. */
        return run_again(iommu_stop(IOMMU, DEVICE), "vmm: STOP of the guest's device refused: error ",
                         "vmm: VM stopped, and its device with it (confirmed); the guest runs again\n", DEVICE_STOPPED);
    case DEVICE_STOPPED:
        microkit_dbg_puts(mb->done && !mb->reached_ram
                              ? "vmm: with its device stopped, the guest's DMA reached nothing of its RAM\n"
                              : "vmm: with its device stopped, the guest's DMA REACHED its RAM (or it did not finish)\n");
        return run_again(iommu_resume(IOMMU, DEVICE), "vmm: RESUME of the guest's device refused: error ",
                         "vmm: device resumed; the guest runs a third time\n", DEVICE_RESUMED);
    case DEVICE_RESUMED:
        microkit_dbg_puts(mb->done && mb->reached_ram
                              ? "vmm: after RESUME, the guest's DMA reaches its RAM again: bytes right\n"
                              : "vmm: after RESUME, the guest's DMA FAILED\n");
        break;
    }
    /* The VMM is done; it now crashes on purpose, as a buggy VMM would with its guest's
     * device still set up: the IOMMU PD, its parent, must take the device's access away
     * (confirmed) before anything else happens. */
    microkit_dbg_puts("vmm: now crashing, with the guest's device still mapped\n");
    *(volatile uint64_t *)0xdead0000ul = 0;
    return seL4_False;
}

void notified(microkit_channel ch)
{
    if (ch != IOMMU) {
        return;
    }
    print_faults("vmm", fault_ring, IOMMU, &next_fault);
}

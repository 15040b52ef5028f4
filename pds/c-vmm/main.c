/*
 * The VMM of images/vm-passthrough.xml: it runs one guest (pds/vm-guest) in the virtual
 * machine `guest`, to which the edu device 00:02.0 is passed through. It loads the guest
 * into the guest's RAM, starts its vCPU at EL1, and when the guest stops (a fault at an
 * address that is not its memory) reports what the guest's DMA reached, then crashes on
 * purpose. As the device's owner it is the IOMMU PD's client and child: the device's
 * faults come to it in its fault ring, and its crash takes the device's access away.
 */
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_print.h"

#include "../vm-guest/mailbox.h"

#define IOMMU 0
#define GUEST 0

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
    volatile struct mailbox *mb = mailbox();
    mb->ram_paddr = guest_ram_paddr;

    /* EL1h with interrupts masked: the guest is a kernel of its own. */
    seL4_UserContext ctxt = {0};
    ctxt.pc = GUEST_RAM_GPA;
    ctxt.spsr = 0x3c5;
    seL4_Error err = seL4_TCB_WriteRegisters(BASE_VM_TCB_CAP + GUEST, seL4_True, 0, 3 /* pc, sp, spsr */, &ctxt);
    microkit_dbg_puts(err == seL4_NoError ? "vmm: guest loaded at guest-physical 0x20000000, started\n"
                                          : "vmm: could not start the guest\n");
}

static void report(void)
{
    volatile struct mailbox *mb = mailbox();
    if (!mb->done) {
        microkit_dbg_puts("vmm: the guest stopped before it finished\n");
        return;
    }
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
    report();
    microkit_vcpu_stop(child);
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

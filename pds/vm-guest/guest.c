/*
 * The guest of images/vm-passthrough.xml: bare-metal aarch64 at EL1, MMU off, its RAM at
 * guest-physical 0x2000_0000. It owns the edu device 00:02.0 passed through to it, finds
 * it through ECAM, and drives it with guest-physical addresses as any guest driver would.
 * It reports to its VMM through the mailbox at the top of its RAM, then stops with an
 * access to an address that is not its memory (a fault its VMM handles).
 */
#include <stdint.h>

#include "edu.h"
#include "mailbox.h"

_Static_assert(GUEST_STACK_TOP == 0x2003f000ul, "_start sets this stack");

#define ECAM 0x3f000000ul
#define ECAM_FUNCTION (2u << 15) /* edu 00:02.0 */
#define BAR0 0x10000000ul

#define SRC (GUEST_RAM_GPA + GUEST_IMAGE_MAX)
/* Where edu_round_trip writes back. */
#define DST (SRC + 0x800)
/* Not guest RAM: nothing of the guest's is mapped here for the device. */
#define OUTSIDE 0x30000000ul

void guest_main(void)
{
    volatile struct mailbox *mb = (volatile struct mailbox *)MAILBOX_GPA;
    volatile uint32_t *cfg = (volatile uint32_t *)(ECAM + ECAM_FUNCTION);
    mb->vendor_device = cfg[0];
    cfg[0x10 / 4] = (uint32_t)BAR0;
    cfg[0x04 / 4] |= 0x6;

    /* Through the device: guest RAM -> the device's buffer -> guest RAM. */
    mb->reached_ram = edu_round_trip(BAR0, (volatile uint8_t *)SRC, SRC, 0x5a);

    /* Aimed at a guest-physical address outside guest RAM: the IOMMU must refuse it (the
     * VMM is told of the fault; the guest cannot see where such a write would land). */
    edu_dma(BAR0, EDU_BUFFER, OUTSIDE, 1);

    /* Aimed at the host-physical address of its own RAM (where it would land with no
     * IOMMU): it must not land there. */
    mb->host_paddr_blocked = edu_write_misses(BAR0, mb->ram_paddr + (DST - GUEST_RAM_GPA), (volatile uint8_t *)DST, 0);

    mb->done = 1;
    /* Not guest memory: the VMM takes the fault and reads the mailbox. */
    *(volatile uint64_t *)0x1000ul = 0;
    for (;;) {
    }
}

/* The entry: a stack below the mailbox, then C. */
__asm__(".section .text.boot, \"ax\"\n"
        ".global _start\n"
        "_start:\n"
        "ldr x0, =0x2003f000\n" /* GUEST_STACK_TOP */
        "mov sp, x0\n"
        "bl guest_main\n"
        "1: b 1b\n"
        ".ltorg\n"
        ".previous\n");

/*
 * The guest of images/vm-passthrough.xml: bare-metal aarch64 at EL1 with its own page
 * tables, its RAM at guest-physical 0x2000_0000. It owns the edu device 00:02.0 passed
 * through to it, finds it through ECAM, and drives it with guest-physical addresses as
 * any guest driver would. It reports to its VMM through the mailbox at the top of its
 * RAM, then stops with an access to an address that is not its memory (a fault its VMM
 * handles).
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

/* Its stage-1 translation: the first GiB identity-mapped in 2 MiB blocks, its RAM as
 * normal memory and everything else (the BAR and ECAM windows, and the rest, so that an
 * access there reaches the VMM as a stage-2 fault) as device memory. RAM is mapped
 * non-cacheable: the device's DMA and the VMM's view of the mailbox see memory, with no
 * cache maintenance. */
static uint64_t level1[512] __attribute__((aligned(4096)));
static uint64_t level2[512] __attribute__((aligned(4096)));

#define BLOCK_2M (1ul << 21)
#define DESC_BLOCK 0x1ul
#define DESC_TABLE 0x3ul
#define DESC_AF (1ul << 10)
#define DESC_SH_INNER (3ul << 8)
#define DESC_ATTR(i) ((uint64_t)(i) << 2)
#define DESC_XN ((1ul << 54) | (1ul << 53))
/* MAIR_EL1: attribute 0 Device-nGnRnE, attribute 1 Normal, inner and outer non-cacheable. */
#define MAIR (0x44ul << 8)
/* TCR_EL1: 39-bit VAs through TTBR0 (T0SZ 25, walks start at level 1), 4 KiB granule,
 * walks non-cacheable, no TTBR1 walks (EPD1), 40-bit IPAs. */
#define TCR ((25ul << 0) | (1ul << 23) | (2ul << 32))
#define SCTLR_M 1ul

static uint64_t own_page_tables(void)
{
    for (unsigned i = 0; i < 512; i++) {
        uint64_t pa = (uint64_t)i * BLOCK_2M;
        int ram = pa <= GUEST_RAM_GPA && GUEST_RAM_GPA < pa + BLOCK_2M;
        level2[i] = pa | DESC_AF | DESC_BLOCK | (ram ? DESC_SH_INNER | DESC_ATTR(1) : DESC_ATTR(0) | DESC_XN);
        level1[i] = 0;
    }
    level1[0] = (uint64_t)level2 | DESC_TABLE;
    uint64_t sctlr;
    __asm__ volatile("dsb ish\n"
                     "msr mair_el1, %1\n"
                     "msr tcr_el1, %2\n"
                     "msr ttbr0_el1, %3\n"
                     "isb\n"
                     "tlbi vmalle1\n"
                     "dsb ish\n"
                     "isb\n"
                     "mrs %0, sctlr_el1\n"
                     "orr %0, %0, %4\n"
                     "msr sctlr_el1, %0\n"
                     "isb\n"
                     "mrs %0, sctlr_el1\n"
                     : "=&r"(sctlr)
                     : "r"(MAIR), "r"(TCR), "r"((uint64_t)level1), "r"(SCTLR_M)
                     : "memory");
    return sctlr;
}

/* Any exception the guest takes (it expects none): what it was, in the mailbox for the
 * VMM, then the stop a finished run makes. */
void guest_exception(void)
{
    volatile struct mailbox *mb = (volatile struct mailbox *)MAILBOX_GPA;
    uint64_t esr, far, elr;
    __asm__ volatile("mrs %0, esr_el1\nmrs %1, far_el1\nmrs %2, elr_el1" : "=r"(esr), "=r"(far), "=r"(elr));
    mb->exception_esr = esr;
    mb->exception_far = far;
    mb->exception_elr = elr;
    *(volatile uint64_t *)0x1000ul = 0;
    for (;;) {
    }
}

void guest_main(void)
{
    volatile struct mailbox *mb = (volatile struct mailbox *)MAILBOX_GPA;
    mb->sctlr = own_page_tables();
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

/* The entry: a stack below the mailbox, exception vectors, then C. */
__asm__(".section .text.boot, \"ax\"\n"
        ".global _start\n"
        "_start:\n"
        "ldr x0, =0x2003f000\n" /* GUEST_STACK_TOP */
        "mov sp, x0\n"
        "adr x0, vectors\n"
        "msr vbar_el1, x0\n"
        "isb\n"
        "bl guest_main\n"
        "1: b 1b\n"
        ".ltorg\n"
        /* Sixteen entries of 128 bytes, each to the same report. */
        ".balign 2048\n"
        "vectors:\n"
        ".rept 16\n"
        "ldr x0, =0x2003f000\n"
        "mov sp, x0\n"
        "b guest_exception\n"
        ".ltorg\n"
        ".balign 128\n"
        ".endr\n"
        ".previous\n");

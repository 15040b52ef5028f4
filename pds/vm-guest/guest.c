/*
 * The guest of images/vm-passthrough.xml: bare-metal aarch64 at EL1 with its own page
 * tables, its RAM at guest-physical 0x2000_0000. It owns the edu device passed through to
 * it, finds it and its BAR through its ECAM (a virtual configuration space its VMM
 * emulates: the edu is 00:00.0 there, alone), and drives it with guest-physical addresses
 * as any guest driver would. It reports to its VMM through the mailbox at the top of its
 * RAM, then stops with an access to an address that is not its memory (a fault its VMM
 * handles).
 */
#include <stdint.h>

#include "edu.h"
#include "mailbox.h"

_Static_assert(GUEST_STACK_TOP == 0x2003f000ul, "_start sets this stack");

/* Its ECAM, bus 0: device d's function 0 at d << 15. */
#define ECAM 0x3f000000ul
#define ECAM_DEVICE(d) ((uint64_t)(d) << 15)
#define EDU_ID 0x11e81234u
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2u
#define PCI_COMMAND_MASTER 0x4u
#define PCI_BAR0 0x10

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
    volatile uint32_t *cfg = (volatile uint32_t *)(ECAM + ECAM_DEVICE(0));
    mb->vendor_device = cfg[0];
    mb->other_function = *(volatile uint32_t *)(ECAM + ECAM_DEVICE(1));
    /* Where its BAR0 is, and how large (the sizing write of all ones, as any OS's PCI
     * code does); then a move to the next place of its size, read back, and back again:
     * the VMM keeps BAR writes to itself, so neither reaches the device. */
    volatile uint32_t *bar = &cfg[PCI_BAR0 / 4];
    uint32_t placed = *bar;
    uint64_t base = placed & ~0xfu;
    *bar = 0xffffffffu;
    uint64_t size = (uint32_t)(~(*bar & ~0xfu) + 1);
    *bar = (uint32_t)(base + size);
    mb->moved_bar0 = *bar;
    *bar = placed;
    mb->bar0 = *bar & ~0xfu;
    mb->bar0_size = size;
    if (mb->vendor_device != EDU_ID || mb->bar0 != base || base == 0) {
        /* Not its device, or no BAR: nothing to drive. The VMM reports it unfinished. */
        *(volatile uint64_t *)0x1000ul = 0;
    }
    /* A 16-bit read and write, as Linux's pci_read_config_word does: forwarded. */
    volatile uint16_t *command = (volatile uint16_t *)(ECAM + ECAM_DEVICE(0) + PCI_COMMAND);
    *command = *command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    mb->command = *command;
    uintptr_t bar0 = (uintptr_t)base;
    mb->ident = *(volatile uint32_t *)bar0;

    /* Through the device: guest RAM -> the device's buffer -> guest RAM. */
    mb->reached_ram = edu_round_trip(bar0, (volatile uint8_t *)SRC, SRC, 0x5a);

    /* Aimed at a guest-physical address outside guest RAM: the IOMMU must refuse it (the
     * VMM is told of the fault; the guest cannot see where such a write would land). */
    edu_dma(bar0, EDU_BUFFER, OUTSIDE, 1);

    /* Aimed at the host-physical address of its own RAM (where it would land with no
     * IOMMU): it must not land there. */
    mb->host_paddr_blocked = edu_write_misses(bar0, mb->ram_paddr + (DST - GUEST_RAM_GPA), (volatile uint8_t *)DST, 0);

    mb->done = 1;
    if (mb->end_with_pair_load) {
        /* A load pair from its ECAM: its syndrome names no register (ISV 0), so the VMM
         * cannot emulate it and must stop the guest here rather than guess. */
        uint32_t a, b;
        __asm__ volatile("ldp %w0, %w1, [%2]" : "=r"(a), "=r"(b) : "r"(ECAM) : "memory");
    }
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

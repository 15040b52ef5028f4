/* Between the passed-through device's guest (pds/vm-guest) and its VMM (pds/c-vmm). */
#pragma once
#include <stdint.h>

#define GUEST_RAM_GPA 0x20000000ul
#define GUEST_RAM_SIZE 0x40000ul
/* The guest's image goes first; its DMA buffers follow at GUEST_RAM_GPA + GUEST_IMAGE_MAX. */
#define GUEST_IMAGE_MAX 0x20000ul
#define MAILBOX_GPA (GUEST_RAM_GPA + GUEST_RAM_SIZE - 0x1000)
#define GUEST_STACK_TOP MAILBOX_GPA

struct mailbox {
    /* Written by the VMM before the guest starts. */
    uint64_t ram_paddr;
    uint64_t end_with_pair_load; /* stop with a load pair from ECAM, not the store at 0x1000 */
    /* Written by the guest. */
    uint64_t sctlr; /* SCTLR_EL1 once its page tables are on */
    uint64_t vendor_device; /* 00:00.0's ID register, in its virtual configuration space */
    uint64_t other_function; /* 00:01.0's: nothing there */
    uint64_t bar0;          /* its BAR0, as read there */
    uint64_t bar0_size;     /* from the sizing write of all ones */
    uint64_t moved_bar0;    /* BAR0 read back after the guest moved it (then put back) */
    uint64_t command;       /* Command after turning Memory Space and Bus Master on */
    uint64_t ident;         /* the edu's ident register, at BAR0 */
    uint64_t reached_ram;
    uint64_t host_paddr_blocked;
    uint64_t done;
    /* An exception the guest took (ESR_EL1, FAR_EL1, ELR_EL1); zero if none. */
    uint64_t exception_esr;
    uint64_t exception_far;
    uint64_t exception_elr;
};

/* Between the passed-through device's guest (pds/vm-guest) and its VMM (pds/c-vmm). */
#pragma once
#include <stdint.h>

#define GUEST_RAM_GPA 0x20000000ul
#define GUEST_RAM_SIZE 0x40000ul
#define MAILBOX_GPA (GUEST_RAM_GPA + GUEST_RAM_SIZE - 0x1000)
#define GUEST_STACK_TOP MAILBOX_GPA

struct mailbox {
    /* Written by the VMM before the guest starts. */
    uint64_t ram_paddr;
    /* Written by the guest. */
    uint64_t vendor_device;
    uint64_t reached_ram;
    uint64_t host_paddr_blocked;
    uint64_t done;
};

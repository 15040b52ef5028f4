/* Booting the guest again on its stopped disk, in an order that fails closed: what each step
 * is, so that the order can be run on the host against stand-ins (iommu-pd/protocol's
 * tests/vm_restart.rs). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct restart_steps {
    /* The vCPU reset and the guest's images loaded into its RAM again, `flag` on its command
     * line; false (said why) if they do not fit. */
    bool (*load)(const char *flag);
    /* RESUME of the disk: 0, or the IOMMU PD's error (said). */
    uint64_t (*resume)(void);
    /* The guest's view of configuration space reset and the disk decoding again; false if it
     * cannot, and then the disk is stopped again (vpci_resumed). */
    bool (*decoding)(void);
    /* The guest started; false if it could not be. */
    bool (*start)(void);
    /* STOP of the disk, as vm_stop does it. */
    bool (*stop)(void);
};

/* The guest booted again with `flag`: true if it runs. Whenever it does not, the disk is
 * left stopped (blocked, no page of the guest's RAM mapped for it). */
bool vm_restart_steps(const struct restart_steps *steps, const char *flag);

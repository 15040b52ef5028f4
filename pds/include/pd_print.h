/* Console output the C PDs share: numbers, what an IOMMU call did, and the fault records
 * the IOMMU PD routes. */
#pragma once
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"

static inline void put_hex(uint64_t v)
{
    char s[19] = "0x";
    int n = 2;
    int started = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned d = (v >> shift) & 0xf;
        if (d || started || shift == 0) {
            s[n++] = "0123456789abcdef"[d];
            started = 1;
        }
    }
    s[n] = 0;
    microkit_dbg_puts(s);
}

/* What an IOMMU call did: "<who>: <what>: ok", or its error code and what it means
 * (iommu_strerror): "<who>: <what>: error 0x7 (BAD_HANDLE: ...)". */
static inline void put_result(const char *who, const char *what, uint64_t err)
{
    microkit_dbg_puts(who);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(what);
    if (err == 0) {
        microkit_dbg_puts(": ok\n");
    } else {
        microkit_dbg_puts(": error ");
        put_hex(err);
        microkit_dbg_puts(" (");
        microkit_dbg_puts(iommu_strerror(err));
        microkit_dbg_puts(")\n");
    }
}

/* Take the new records from the fault ring at `ring` (channel `ch`) and print each as
 * "<who>: told: stream S write at iova A..=B"; the IOMMU service's failure once, from the
 * ring's flag (iommu_service_failed), which a full ring sets too: a SERVICE_FAILED record is
 * no fault (its stream and addresses are 0), nor is a QUARANTINED_AT_OVERFLOW one, printed
 * as the quarantine it is. */
static inline void print_faults(const char *who, uintptr_t ring, microkit_channel ch, uint64_t *next)
{
    static int told_failed;
    const volatile struct iommu_fault_ring *r = (const volatile struct iommu_fault_ring *)ring;
    struct iommu_fault_record out[8];
    unsigned n = iommu_take_faults(r, ch, next, out, 8);
    for (unsigned i = 0; i < n; i++) {
        if (out[i].kind == IOMMU_FAULT_KIND_SERVICE_FAILED) {
            continue;
        }
        if (out[i].kind == IOMMU_FAULT_KIND_QUARANTINED_AT_OVERFLOW) {
            /* No fault of the device's (its stream and addresses are 0): the event queue
             * lost records, and this device, on probation after a storm, had faulted. */
            microkit_dbg_puts(who);
            microkit_dbg_puts(": told: device ");
            put_hex(out[i].device);
            microkit_dbg_puts(" QUARANTINED at an event-queue overflow; RESUME it when ready\n");
            continue;
        }
        microkit_dbg_puts(who);
        microkit_dbg_puts(": told: stream ");
        put_hex(out[i].stream);
        microkit_dbg_puts(out[i].write ? " write at iova " : " read at iova ");
        put_hex(out[i].iova);
        microkit_dbg_puts("..=");
        put_hex(out[i].iova_last);
        microkit_dbg_puts("\n");
    }
    if (!told_failed && iommu_service_failed(r)) {
        told_failed = 1;
        microkit_dbg_puts(who);
        microkit_dbg_puts(": told: the IOMMU service FAILED: every call is refused from now on, and no mapping or "
                          "removal in progress will complete; ");
        microkit_dbg_puts(iommu_service_failed_dma_stopped(r)
                              ? "every device's DMA aborts\n"
                              : "DMA NOT KNOWN TO BE STOPPED: a device may still reach what it had mapped\n");
    }
}

/*
 * The IOMMU service for C protection domains: typed calls over a Microkit channel (a
 * protected procedure call to the IOMMU PD) and reading the fault ring the IOMMU PD
 * shares with this PD. The labels, error codes, message-register layouts and the ring's
 * layout come from iommu_service.h, which is generated from the Rust declaration of the
 * protocol (iommu-pd/protocol); a host test checks that these functions encode every
 * request as the Rust client does.
 *
 * Every function returns 0 on success or an IOMMU_ERR_* code, as the IOMMU PD replied.
 */
#ifndef IOMMU_CLIENT_H
#define IOMMU_CLIENT_H

#include <microkit.h>

#include "iommu_service.h"

static inline uint64_t iommu_call(microkit_channel ch, uint64_t op, unsigned count)
{
    return microkit_msginfo_get_label(microkit_ppcall(ch, microkit_msginfo_new(op, count)));
}

/* A request whose one message register is `mr0`. */
static inline uint64_t iommu_call1(microkit_channel ch, uint64_t op, uint64_t mr0)
{
    microkit_mr_set(0, mr0);
    return iommu_call(ch, op, 1);
}

/* MAP `len` bytes at `offset` of capability `handle` for `device`; `iova` is where, or
 * IOMMU_IOVA_ANY to let the service choose; the IOVA used is written to `*iova_out`. */
static inline uint64_t iommu_map(microkit_channel ch, uint32_t handle, uint32_t device, uint64_t offset,
                                 uint64_t len, uint64_t iova, uint8_t rights, uint64_t *iova_out)
{
    /* Four registers, so seL4 takes its IPC fast path: the handle in 24 bits (one too wide
     * goes as the widest, which no table has), the rights above it. */
    uint64_t h = handle > IOMMU_MAP_HANDLE_MASK ? IOMMU_MAP_HANDLE_MASK : handle;
    microkit_mr_set(0, h | ((uint64_t)rights << 24) | ((uint64_t)device << 32));
    microkit_mr_set(1, offset);
    microkit_mr_set(2, len);
    microkit_mr_set(3, iova);
    uint64_t err = iommu_call(ch, IOMMU_OP_MAP, 4);
    if (err == 0 && iova_out) {
        *iova_out = microkit_mr_get(0);
    }
    return err;
}

/* UNMAP the mappings of `device` starting at `iovas[0..n]` (1 to IOMMU_MAX_UNMAP_RANGES);
 * returns once the IOMMU confirmed. */
static inline uint64_t iommu_unmap(microkit_channel ch, uint32_t device, const uint64_t *iovas, unsigned n)
{
    if (n == 0 || n > IOMMU_MAX_UNMAP_RANGES) {
        return IOMMU_ERR_MALFORMED;
    }
    microkit_mr_set(0, device);
    microkit_mr_set(1, n);
    for (unsigned i = 0; i < n; i++) {
        microkit_mr_set(2 + i, iovas[i]);
    }
    return iommu_call(ch, IOMMU_OP_UNMAP, 2 + n);
}

/* GRANT client `to` a narrower capability for its `devices` (a bit mask); the grant (for
 * REVOKE) goes to `*grant`, the receiver's handle to `*theirs`. */
static inline uint64_t iommu_grant(microkit_channel ch, uint32_t handle, uint32_t to, uint64_t offset, uint64_t len,
                                   uint8_t rights, uint64_t devices, uint32_t *grant, uint32_t *theirs)
{
    microkit_mr_set(0, (uint64_t)handle | ((uint64_t)to << 32));
    microkit_mr_set(1, offset);
    microkit_mr_set(2, len);
    microkit_mr_set(3, rights);
    microkit_mr_set(4, devices);
    uint64_t err = iommu_call(ch, IOMMU_OP_GRANT, 5);
    if (err == 0) {
        if (grant) {
            *grant = (uint32_t)microkit_mr_get(0);
        }
        if (theirs) {
            *theirs = (uint32_t)microkit_mr_get(1);
        }
    }
    return err;
}

/* REVOKE a grant, and everything derived from it; returns once the IOMMU confirmed. */
static inline uint64_t iommu_revoke(microkit_channel ch, uint32_t grant)
{
    return iommu_call1(ch, IOMMU_OP_REVOKE, grant);
}

/* RELEASE a capability this PD received by GRANT. */
static inline uint64_t iommu_release(microkit_channel ch, uint32_t handle)
{
    return iommu_call1(ch, IOMMU_OP_RELEASE, handle);
}

/* RESUME a quarantined device, one blocked by a removal the IOMMU did not confirm, or one
 * stopped by iommu_stop (it comes back with its static mappings). */
static inline uint64_t iommu_resume(microkit_channel ch, uint32_t device)
{
    return iommu_call1(ch, IOMMU_OP_RESUME, device);
}

/* STOP a device: blocked, every mapping gone (static ones too), confirmed by the IOMMU
 * before the reply; then, if it is a PCI function, its Bus Master off and a Function
 * Level Reset where it has one (100 ms), its BARs as the IOMMU PD placed them. What was
 * done to the function goes to `*function` (IOMMU_STOP_* bits; 0 for a device that is
 * no PCI function) when it is not NULL. IOMMU_ERR_STOPPED for the device's requests
 * until iommu_resume. What a VMM sends when it stops the virtual machine the device is
 * passed through to. */
static inline uint64_t iommu_stop(microkit_channel ch, uint32_t device, uint64_t *function)
{
    uint64_t err = iommu_call1(ch, IOMMU_OP_STOP, device);
    if (err == 0 && function) {
        *function = microkit_mr_get(0);
    }
    return err;
}

/* CONFIG_READ: `width` (1, 2 or 4) bytes at `offset` (a multiple of `width`) of the PCI
 * configuration space of one of this PD's devices, into `*value`. The IOMMU PD owns
 * configuration space; no driver maps ECAM. */
static inline uint64_t iommu_config_read(microkit_channel ch, uint32_t device, uint16_t offset, uint8_t width,
                                         uint32_t *value)
{
    microkit_mr_set(0, device);
    microkit_mr_set(1, (uint64_t)offset | ((uint64_t)width << IOMMU_CONFIG_WIDTH_SHIFT));
    uint64_t err = iommu_call(ch, IOMMU_OP_CONFIG_READ, 2);
    if (err == 0 && value) {
        *value = (uint32_t)microkit_mr_get(0);
    }
    return err;
}

/* CONFIG_WRITE: what a driver may write of its device's configuration space (Command's
 * Memory Space, Bus Master and INTx-disable bits, MSI/MSI-X, device-specific registers;
 * a BAR may be sized with all ones, not moved); anything else is IOMMU_ERR_CONFIG_DENIED
 * and nothing is written. What the register reads afterwards goes to `*after` (for a BAR
 * sized, its size mask). */
static inline uint64_t iommu_config_write(microkit_channel ch, uint32_t device, uint16_t offset, uint8_t width,
                                          uint32_t value, uint32_t *after)
{
    microkit_mr_set(0, device);
    microkit_mr_set(1, (uint64_t)offset | ((uint64_t)width << IOMMU_CONFIG_WIDTH_SHIFT));
    microkit_mr_set(2, value);
    uint64_t err = iommu_call(ch, IOMMU_OP_CONFIG_WRITE, 3);
    if (err == 0 && after) {
        *after = (uint32_t)microkit_mr_get(0);
    }
    return err;
}

/* QUERY: IOMMU_QUERY_VALUES words into `out` (see IOMMU_QUERY_*). */
static inline uint64_t iommu_query(microkit_channel ch, uint64_t out[IOMMU_QUERY_VALUES])
{
    uint64_t err = iommu_call(ch, IOMMU_OP_QUERY, 0);
    for (unsigned i = 0; err == 0 && i < IOMMU_QUERY_VALUES; i++) {
        out[i] = microkit_mr_get(i);
    }
    return err;
}

/* ACK_FAULTS: the records up to sequence number `upto` have been read. */
static inline uint64_t iommu_ack_faults(microkit_channel ch, uint64_t upto)
{
    return iommu_call1(ch, IOMMU_OP_ACK_FAULTS, upto);
}

/* Copy the records published since `*next` (at most `max`) from this PD's fault ring into
 * `out`, acknowledge them, and return how many: as the Rust client's
 * `FaultRing::read_shared` and `take_faults` do. */
static inline unsigned iommu_take_faults(const volatile struct iommu_fault_ring *ring, microkit_channel ch,
                                         uint64_t *next, struct iommu_fault_record *out, unsigned max)
{
    uint64_t published = __atomic_load_n((const uint64_t *)&ring->published, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    for (uint64_t seq = *next; seq < published && n < max && published - seq <= IOMMU_FAULT_RING; seq++) {
        const volatile struct iommu_fault_record *r = &ring->records[seq % IOMMU_FAULT_RING];
        out[n].seq = r->seq;
        out[n].device = r->device;
        out[n].stream = r->stream;
        out[n].iova = r->iova;
        out[n].kind = r->kind;
        out[n].write = r->write;
        out[n].region = r->region;
        out[n].near = r->near;
        out[n].offset = r->offset;
        out[n].quarantined = r->quarantined;
        out[n].dropped_before = r->dropped_before;
        out[n].repeats = r->repeats;
        out[n].iova_last = r->iova_last;
        n++;
    }
    if (n > 0) {
        *next = out[n - 1].seq + 1;
        iommu_ack_faults(ch, out[n - 1].seq);
    }
    return n;
}

#endif

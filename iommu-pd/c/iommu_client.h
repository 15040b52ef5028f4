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
 * stopped by iommu_stop (it comes back with its static mappings). The second register says
 * which error codes this PD decodes (those up to IOMMU_ERR_NEWEST): without it the IOMMU PD
 * answers IOMMU_ERR_QUARANTINED for IOMMU_ERR_RESUME_RATIONED. */
static inline uint64_t iommu_resume(microkit_channel ch, uint32_t device)
{
    microkit_mr_set(0, device);
    microkit_mr_set(1, IOMMU_ERR_NEWEST);
    return iommu_call(ch, IOMMU_OP_RESUME, 2);
}

/* MAP as a driver's first MAP of `device` at its start (its first run, or after the IOMMU
 * PD restarted it from its entry), as the Rust client's map_at_start: a device whose PCI
 * function was away at its last client's teardown is left stopped for the restarted
 * client (MAP answers IOMMU_ERR_STOPPED); this then RESUMEs it (the IOMMU PD puts the
 * function back and resets it first) and maps once more. Only IOMMU_ERR_STOPPED is
 * resumed: MAP answers IOMMU_ERR_QUARANTINED ahead of it, so a storm's quarantine is never
 * lifted here. RESUME's refusals are returned, the device left stopped
 * (IOMMU_ERR_RESET_RATIONED: RESUME again later; IOMMU_ERR_DEVICE_MISSING: still away).
 * Not for a device this run stopped itself (iommu_stop). */
static inline uint64_t iommu_map_at_start(microkit_channel ch, uint32_t handle, uint32_t device, uint64_t offset,
                                          uint64_t len, uint64_t iova, uint8_t rights, uint64_t *iova_out)
{
    uint64_t err = iommu_map(ch, handle, device, offset, len, iova, rights, iova_out);
    if (err != IOMMU_ERR_STOPPED) {
        return err;
    }
    err = iommu_resume(ch, device);
    if (err != 0) {
        return err;
    }
    return iommu_map(ch, handle, device, offset, len, iova, rights, iova_out);
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

/* A reply's first `n` values into `out` when `err` says it succeeded; returns `err`. */
static inline uint64_t iommu_reply_values(uint64_t err, uint64_t *out, unsigned n)
{
    for (unsigned i = 0; err == 0 && i < n; i++) {
        out[i] = microkit_mr_get(i);
    }
    return err;
}

/* QUERY: IOMMU_QUERY_VALUES words into `out` (see IOMMU_QUERY_*). */
static inline uint64_t iommu_query(microkit_channel ch, uint64_t out[IOMMU_QUERY_VALUES])
{
    return iommu_reply_values(iommu_call(ch, IOMMU_OP_QUERY, 0), out, IOMMU_QUERY_VALUES);
}

/* QUERY_MAPPING: the caller's `index`-th mapping (in IOVA order, device by device) into
 * `out` (IOMMU_QUERY_MAPPING_VALUES words, see IOMMU_QUERY_MAPPING_*);
 * IOMMU_ERR_NOT_MAPPED past the last. */
static inline uint64_t iommu_query_mapping(microkit_channel ch, uint64_t index,
                                           uint64_t out[IOMMU_QUERY_MAPPING_VALUES])
{
    return iommu_reply_values(iommu_call1(ch, IOMMU_OP_QUERY_MAPPING, index), out, IOMMU_QUERY_MAPPING_VALUES);
}

/* Whether a mapping of `device` still covers `iova`: 0 none (confirmed by the IOMMU PD's
 * books, which hold every mapping its tables do), 1 one does, or the error QUERY_MAPPING
 * answered (not known). An UNMAP answers IOMMU_ERR_NOT_MAPPED both when no mapping starts
 * at `iova` any more (a STOP or a REVOKE took it) and when `iova` lies inside a mapping
 * that starts elsewhere, which it leaves in place: this tells the two apart. One
 * QUERY_MAPPING per mapping of the caller's up to the one found (all of them when none
 * covers it), so iommu_unmap_strict asks only on that answer. */
static inline uint64_t iommu_mapping_covers(microkit_channel ch, uint32_t device, uint64_t iova)
{
    uint64_t m[IOMMU_QUERY_MAPPING_VALUES];
    for (uint64_t i = 0;; i++) {
        uint64_t err = iommu_query_mapping(ch, i, m);
        if (err == IOMMU_ERR_NOT_MAPPED) {
            return 0;
        }
        if (err != 0) {
            return err;
        }
        if (m[IOMMU_QUERY_MAPPING_DEVICE] == device && m[IOMMU_QUERY_MAPPING_IOVA] <= iova &&
            iova - m[IOMMU_QUERY_MAPPING_IOVA] < m[IOMMU_QUERY_MAPPING_LENGTH]) {
            return 1;
        }
    }
}

/* ACK_FAULTS: the records up to sequence number `upto` have been read. The reply is record
 * `upto` as it stands once acknowledged (IOMMU_ACK_FAULTS_*): until then the IOMMU PD may
 * fold later faults of the same burst into the newest record. */
static inline uint64_t iommu_ack_faults(microkit_channel ch, uint64_t upto)
{
    return iommu_call1(ch, IOMMU_OP_ACK_FAULTS, upto);
}

/* Whether the IOMMU service has failed for good (the ring's `failed`, set whether or not its
 * SERVICE_FAILED record found room in the ring): as the Rust client's
 * `FaultRing::failed_shared`. Nothing is served from then on. */
static inline int iommu_service_failed(const volatile struct iommu_fault_ring *ring)
{
    return __atomic_load_n((const uint64_t *)&ring->failed, __ATOMIC_ACQUIRE) != 0;
}

/* Once the service has failed: whether the IOMMU confirmed that every device's DMA aborts
 * (IOMMU_FAILED_DMA_STOPPED in the ring's `failed`); 0 means not known to be stopped, a
 * device may still reach what it had mapped. As the Rust client's
 * `FaultRing::failure_shared`. */
static inline int iommu_service_failed_dma_stopped(const volatile struct iommu_fault_ring *ring)
{
    return __atomic_load_n((const uint64_t *)&ring->failed, __ATOMIC_ACQUIRE) == IOMMU_FAILED_DMA_STOPPED;
}

/* Copy the records published since `*next` (at most `max`) from this PD's fault ring into
 * `out`, acknowledge them, and return how many: as the Rust client's `Client::take_faults`
 * does. The last one is brought up to the acknowledgment's reply: the IOMMU PD, which
 * preempts this PD when the SMMU reports more faults, may have folded more of the burst
 * into it between the copy and the call, and the copy alone never showed them. */
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
        struct iommu_fault_record *last = &out[n - 1];
        *next = last->seq + 1;
        /* Zeros where a reply without these values would leave what an earlier call did:
         * both only grow, so zeros change nothing. */
        microkit_mr_set(IOMMU_ACK_FAULTS_REPEATS, 0);
        microkit_mr_set(IOMMU_ACK_FAULTS_IOVA_LAST, 0);
        if (iommu_ack_faults(ch, last->seq) == 0 && microkit_mr_get(IOMMU_ACK_FAULTS_SEQ) == last->seq) {
            uint64_t repeats = microkit_mr_get(IOMMU_ACK_FAULTS_REPEATS);
            uint64_t iova_last = microkit_mr_get(IOMMU_ACK_FAULTS_IOVA_LAST);
            if (repeats > last->repeats) {
                last->repeats = repeats > UINT32_MAX ? UINT32_MAX : (uint32_t)repeats;
            }
            if (iova_last > last->iova_last) {
                last->iova_last = iova_last;
            }
        }
    }
    return n;
}

/*
 * The mapping queue (<dma_queue pd="..." entries="N"/> in the description, which maps its
 * region here at `iommu_queue`, `iommu_queue_size` bytes): MAP and UNMAP posted as entries,
 * with the same meaning as the calls, one wake-up for many. A buffer whose UNMAP was posted
 * is the device's until that UNMAP's completion says 0 (the IOMMU confirmed it gone).
 */
struct iommu_queue {
    volatile struct iommu_queue_header *header;
    volatile struct iommu_queue_entry *requests;
    volatile struct iommu_queue_completion *completions;
    uint32_t entries;
    uint64_t next_tag;
    microkit_channel ch;
};

/* A completion: the posted entry's tag, what its call would have answered (0 or an
 * IOMMU_ERR_* code), and MAP's IOVA. */
struct iommu_queue_done {
    uint64_t tag;
    uint64_t err;
    uint64_t value;
};

/* The queue in the region at `base` of `size` bytes, of `entries` slots a ring (the
 * description's, in <pd>_iommu.h as <PD>_QUEUE_ENTRIES), woken on channel `ch`. Starts from
 * where the IOMMU PD is (after a restart it has started the queue over): anything posted
 * and not taken is dropped. 0, or IOMMU_ERR_OUT_OF_RANGE for a size or count that does not
 * fit. */
static inline uint64_t iommu_queue_init(struct iommu_queue *q, uintptr_t base, uint64_t size, uint32_t entries,
                                        microkit_channel ch)
{
    if (entries == 0 || (entries & (entries - 1)) != 0 || entries > IOMMU_QUEUE_MAX_ENTRIES ||
        IOMMU_QUEUE_REGION_SIZE(entries) > size || base % 64 != 0) {
        return IOMMU_ERR_OUT_OF_RANGE;
    }
    q->header = (volatile struct iommu_queue_header *)base;
    q->requests = (volatile struct iommu_queue_entry *)(base + IOMMU_QUEUE_REQUESTS);
    q->completions = (volatile struct iommu_queue_completion *)(base + IOMMU_QUEUE_COMPLETIONS(entries));
    q->entries = entries;
    q->next_tag = 0;
    q->ch = ch;
    uint32_t head = __atomic_load_n(&q->header->request_head, __ATOMIC_ACQUIRE);
    uint32_t tail = __atomic_load_n(&q->header->completion_tail, __ATOMIC_ACQUIRE);
    __atomic_store_n(&q->header->request_tail, head, __ATOMIC_RELEASE);
    __atomic_store_n(&q->header->completion_head, tail, __ATOMIC_RELEASE);
    return 0;
}

/* Post an entry: 0 and its tag in `*tag`, or 1 if the ring is full (nothing written). The entry is written, then the tail stored with release, so the
 * IOMMU PD sees the entry whole once it sees the tail. */
static inline int iommu_queue_post(struct iommu_queue *q, uint64_t label, const uint64_t mrs[IOMMU_QUEUE_ENTRY_MRS],
                                   uint64_t *tag)
{
    uint32_t tail = __atomic_load_n(&q->header->request_tail, __ATOMIC_RELAXED);
    if (tail - __atomic_load_n(&q->header->request_head, __ATOMIC_ACQUIRE) >= q->entries) {
        return 1;
    }
    volatile struct iommu_queue_entry *e = &q->requests[tail & (q->entries - 1)];
    __atomic_store_n(&e->label, label, __ATOMIC_RELAXED);
    __atomic_store_n(&e->tag, q->next_tag, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < IOMMU_QUEUE_ENTRY_MRS; i++) {
        __atomic_store_n(&e->mrs[i], mrs[i], __ATOMIC_RELAXED);
    }
    __atomic_store_n(&q->header->request_tail, tail + 1, __ATOMIC_RELEASE);
    if (tag) {
        *tag = q->next_tag;
    }
    q->next_tag++;
    return 0;
}

/* Post a MAP (as iommu_map: IOMMU_IOVA_ANY lets the service choose); not sent until
 * iommu_queue_notify or iommu_queue_serve. 0 and its tag in `*tag`, or 1 if the ring is full. */
static inline int iommu_queue_post_map(struct iommu_queue *q, uint32_t handle, uint32_t device, uint64_t offset,
                                       uint64_t len, uint64_t iova, uint8_t rights, uint64_t *tag)
{
    uint64_t h = handle > IOMMU_MAP_HANDLE_MASK ? IOMMU_MAP_HANDLE_MASK : handle;
    const uint64_t mrs[IOMMU_QUEUE_ENTRY_MRS] = {h | ((uint64_t)rights << 24) | ((uint64_t)device << 32), offset, len,
                                                 iova};
    return iommu_queue_post(q, IOMMU_OP_MAP, mrs, tag);
}

/* Post an UNMAP of `device`'s mapping at `iova` (one an entry; a batch of entries removes
 * many under one invalidation sync). 0 and its tag in `*tag`, or 1 if the ring is full. */
static inline int iommu_queue_post_unmap(struct iommu_queue *q, uint32_t device, uint64_t iova, uint64_t *tag)
{
    const uint64_t mrs[IOMMU_QUEUE_ENTRY_MRS] = {device, 1, iova, 0};
    return iommu_queue_post(q, IOMMU_OP_UNMAP, mrs, tag);
}

/* Wake the IOMMU PD for what was posted: it takes up to IOMMU_QUEUE_BATCH entries, posts
 * their completions, and notifies back on the same channel (handle it in notified(); if
 * iommu_queue_untaken is then not 0, notify again). */
static inline void iommu_queue_notify(struct iommu_queue *q)
{
    microkit_notify(q->ch);
}

/* The doorbell call, for a PD that waits for its completions anyway (a call takes seL4's
 * fastpath): the IOMMU PD serves one batch and replies once its completions are posted;
 * the entries it took go to `*taken`. 0, or IOMMU_ERR_UNKNOWN_OP for a PD with no queue. */
static inline uint64_t iommu_queue_serve(struct iommu_queue *q, uint64_t *taken)
{
    uint64_t err = iommu_call(q->ch, IOMMU_QUEUE_SERVE, 0);
    if (err == 0 && taken) {
        *taken = microkit_mr_get(0);
    }
    return err;
}

/* Take the next completion into `*done`: 1 if there was one, 0 if none has been posted. */
static inline int iommu_queue_take(struct iommu_queue *q, struct iommu_queue_done *done)
{
    uint32_t head = __atomic_load_n(&q->header->completion_head, __ATOMIC_RELAXED);
    if (head == __atomic_load_n(&q->header->completion_tail, __ATOMIC_ACQUIRE)) {
        return 0;
    }
    volatile struct iommu_queue_completion *c = &q->completions[head & (q->entries - 1)];
    done->tag = __atomic_load_n(&c->tag, __ATOMIC_RELAXED);
    done->err = __atomic_load_n(&c->label, __ATOMIC_RELAXED);
    done->value = __atomic_load_n(&c->value, __ATOMIC_RELAXED);
    /* Release: the slot is read before the IOMMU PD may write it again. */
    __atomic_store_n(&q->header->completion_head, head + 1, __ATOMIC_RELEASE);
    return 1;
}

/* Entries posted that the IOMMU PD has not taken yet. */
static inline uint32_t iommu_queue_untaken(struct iommu_queue *q)
{
    return __atomic_load_n(&q->header->request_tail, __ATOMIC_RELAXED) -
           __atomic_load_n(&q->header->request_head, __ATOMIC_ACQUIRE);
}

/* Withdraw the entry tagged `tag` if the IOMMU PD has not taken it yet: its label becomes
 * IOMMU_QUEUE_WITHDRAWN, which the IOMMU PD answers IOMMU_ERR_UNKNOWN_OP (with the tag)
 * and acts on no further. 1 if withdrawn: then it is never applied. 0 if there is no such
 * entry untaken, or the IOMMU PD took it first: then it is (or was) served as its call
 * would be. For an UNMAP the PD then makes by the call: left as it was, the entry would be
 * served later and take whatever was mapped at its IOVA since. Safe while the IOMMU PD
 * serves the queue on another core: the label is claimed by a compare-and-swap against
 * the IOMMU PD's swap of it for IOMMU_QUEUE_TAKEN as it takes the entry, so exactly one of
 * the two wins. (Built for aarch64 with -mno-outline-atomics where nothing provides
 * libgcc's __aarch64_cas8_* helpers: the Microkit PDs link without libgcc.) */
static inline int iommu_queue_withdraw(struct iommu_queue *q, uint64_t tag)
{
    uint32_t tail = __atomic_load_n(&q->header->request_tail, __ATOMIC_RELAXED);
    uint32_t untaken = tail - __atomic_load_n(&q->header->request_head, __ATOMIC_ACQUIRE);
    /* (No more than a ring's worth, whatever a scribbled head says.) */
    for (uint32_t i = 0; i < untaken && i < q->entries; i++) {
        volatile struct iommu_queue_entry *e = &q->requests[(tail - 1 - i) & (q->entries - 1)];
        if (__atomic_load_n(&e->tag, __ATOMIC_RELAXED) == tag) {
            uint64_t posted = __atomic_load_n(&e->label, __ATOMIC_RELAXED);
            if (posted == IOMMU_QUEUE_WITHDRAWN) {
                return 1;
            }
            /* (Relaxed: both sides' read-modify-writes of this one word are ordered by the
             * word itself.) */
            return posted != IOMMU_QUEUE_TAKEN &&
                   __atomic_compare_exchange_n(&e->label, &posted, IOMMU_QUEUE_WITHDRAWN, 0, __ATOMIC_RELAXED,
                                               __ATOMIC_RELAXED);
        }
    }
    return 0;
}

/*
 * A strict UNMAP with a fallback, as the Rust client's IommuHal makes one: what a driver
 * calls before it reads or reuses a buffer its device had. When it returns anything but
 * IOMMU_UNMAP_NOT_STOPPED, the device no longer reaches the mapping, confirmed by the
 * IOMMU.
 */
enum iommu_unmap_strict_result {
    /* The queue's completion said so: 0, or IOMMU_ERR_NOT_MAPPED with no mapping of the
     * device covering `iova` (iommu_mapping_covers: a STOP or a REVOKE took it). */
    IOMMU_UNMAPPED_BY_QUEUE = 0,
    /* The queue did not (none given, the ring full, no answer, an error answer): the UNMAP
     * call did (0, or IOMMU_ERR_NOT_MAPPED with no mapping covering `iova`). An entry left
     * in the ring unanswered is withdrawn first (iommu_queue_withdraw): served later, it
     * would take what the call had mapped at its IOVA since. */
    IOMMU_UNMAPPED_BY_CALL = 1,
    /* The call did not confirm it either: the device was stopped (iommu_stop answered 0:
     * blocked, every mapping gone, until iommu_resume). Also when `iova` lies inside a
     * mapping that starts elsewhere (both answered IOMMU_ERR_NOT_MAPPED, and a mapping
     * still covers it): pass the IOVA MAP returned. */
    IOMMU_UNMAP_STOPPED = 2,
    /* Not even STOP was confirmed, asked IOMMU_STOP_TRIES times while it answered
     * IOMMU_ERR_HARDWARE (each a request before which the IOMMU PD retries the blocks and
     * removals it could not confirm): the device may still reach the buffer. Do not read
     * or reuse it; the IOMMU PD blocks the device when the IOMMU obeys again, and a later
     * iommu_stop that answers 0 ends it. */
    IOMMU_UNMAP_NOT_STOPPED = 3,
};

/* How many times iommu_unmap_strict asks for a STOP the IOMMU does not confirm. */
#define IOMMU_STOP_TRIES 4

/* UNMAP `device`'s mapping at `iova`, strictly: through the queue `q` when it is not NULL
 * (posted, then the doorbell until its completion is there, at most one call a batch of
 * the ring's entries, stopping at one that takes nothing), else, or if the queue does not
 * confirm it, by the UNMAP call on `ch`, else STOP the device. Completions of other
 * entries taken while waiting go to `other(done, ctx)` (dropped if `other` is NULL). The
 * last error the IOMMU PD answered on the way goes to `*err` (0 if none) when it is not
 * NULL. IOMMU_ERR_NOT_MAPPED counts as gone only when no mapping of the device covers
 * `iova` (iommu_mapping_covers), since the IOMMU PD answers it too for an IOVA inside a
 * mapping, which it leaves in place. */
static inline enum iommu_unmap_strict_result iommu_unmap_strict(struct iommu_queue *q, microkit_channel ch,
                                                                uint32_t device, uint64_t iova,
                                                                void (*other)(const struct iommu_queue_done *,
                                                                              void *),
                                                                void *ctx, uint64_t *err)
{
    uint64_t last = 0, tag = 0, taken = 0;
    /* The ring full holds entries still untaken: a serve takes some, and then there is room. */
    int posted = q && (iommu_queue_post_unmap(q, device, iova, &tag) == 0 ||
                       (iommu_queue_serve(q, &taken) == 0 && iommu_queue_post_unmap(q, device, iova, &tag) == 0));
    for (uint32_t serves = 0; posted && serves <= q->entries / IOMMU_QUEUE_BATCH; serves++) {
        uint64_t e = iommu_queue_serve(q, &taken);
        if (e != 0) {
            last = e;
            break;
        }
        struct iommu_queue_done d;
        int answered = 0;
        while (iommu_queue_take(q, &d)) {
            if (d.tag != tag) {
                if (other) {
                    other(&d, ctx);
                }
            } else if (d.err == 0 ||
                       (d.err == IOMMU_ERR_NOT_MAPPED && iommu_mapping_covers(ch, device, iova) == 0)) {
                answered = 1;
            } else {
                last = d.err;
                answered = -1;
            }
        }
        if (answered == 1) {
            if (err) {
                *err = last;
            }
            return IOMMU_UNMAPPED_BY_QUEUE;
        }
        if (answered == -1 || taken == 0) {
            break;
        }
    }
    if (posted) {
        (void)iommu_queue_withdraw(q, tag);
    }
    enum iommu_unmap_strict_result result = IOMMU_UNMAPPED_BY_CALL;
    uint64_t e = iommu_unmap(ch, device, &iova, 1);
    if (e != 0 && !(e == IOMMU_ERR_NOT_MAPPED && iommu_mapping_covers(ch, device, iova) == 0)) {
        last = e;
        result = IOMMU_UNMAP_NOT_STOPPED;
        for (unsigned i = 0; i < IOMMU_STOP_TRIES && result == IOMMU_UNMAP_NOT_STOPPED; i++) {
            e = iommu_stop(ch, device, NULL);
            if (e == 0) {
                result = IOMMU_UNMAP_STOPPED;
            } else {
                last = e;
                if (e != IOMMU_ERR_HARDWARE) {
                    break;
                }
            }
        }
    }
    if (err) {
        *err = last;
    }
    return result;
}

#endif

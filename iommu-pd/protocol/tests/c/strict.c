/* Runs iommu_unmap_strict against a stand-in IOMMU PD that answers as each case says (the
 * queue's entries, the UNMAP call, STOP) and prints, for tests/c_header.rs, what it
 * returned and which requests it made. */
#include <stdio.h>
#include <string.h>

#include "iommu_client.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

/* A queue region of 8 slots. */
static struct {
    struct iommu_queue_header header;
    struct iommu_queue_entry requests[8];
    struct iommu_queue_completion completions[8];
} region __attribute__((aligned(4096)));

/* How the stand-in IOMMU PD answers: each queue entry it takes (unless `silent`: it takes
 * none), the UNMAP call, and each STOP. */
static struct {
    int silent;
    uint64_t entry, unmap, stop;
} answers;

/* The mappings the stand-in holds, which it lists for QUERY_MAPPING in this order. */
static struct {
    unsigned n;
    uint64_t device[4], iova[4], len[4];
} held;

static void hold(unsigned n, const uint64_t device[], const uint64_t iova[], const uint64_t len[])
{
    held.n = n;
    for (unsigned i = 0; i < n; i++) {
        held.device[i] = device[i];
        held.iova[i] = iova[i];
        held.len[i] = len[i];
    }
}

/* The requests made, in order, and what the queue's UNMAP entry and the UNMAP call said. */
static char made[256];
static char unmap_entry[128], unmap_call[128];
/* UNMAP entries the stand-in served. */
static unsigned unmaps_served;

static void record(const char *what)
{
    strncat(made, what, sizeof made - strlen(made) - 1);
}

static uint64_t iommu_pd(uint64_t label)
{
    switch (label) {
    case IOMMU_QUEUE_SERVE: {
        record(" serve");
        uint32_t head = region.header.request_head, tail = region.header.request_tail;
        uint32_t taken = 0;
        for (; !answers.silent && head != tail && taken < IOMMU_QUEUE_BATCH; head++, taken++) {
            struct iommu_queue_entry *e = &region.requests[head % 8];
            if (e->label == IOMMU_OP_UNMAP) {
                snprintf(unmap_entry, sizeof unmap_entry, "%llu %llu %llu %llu %llu", (unsigned long long)e->label,
                         (unsigned long long)e->mrs[0], (unsigned long long)e->mrs[1], (unsigned long long)e->mrs[2],
                         (unsigned long long)e->mrs[3]);
            }
            struct iommu_queue_completion *c = &region.completions[region.header.completion_tail % 8];
            c->tag = e->tag;
            /* As the IOMMU PD: MAP and UNMAP are served, anything else (a withdrawn entry)
             * answered IOMMU_ERR_UNKNOWN_OP. */
            c->label = e->label == IOMMU_OP_UNMAP ? answers.entry
                       : e->label == IOMMU_OP_MAP ? 0
                                                  : IOMMU_ERR_UNKNOWN_OP;
            unmaps_served += e->label == IOMMU_OP_UNMAP;
            c->value = 0;
            region.header.completion_tail++;
        }
        region.header.request_head = head;
        stub_mrs[0] = taken;
        return 0;
    }
    case IOMMU_OP_UNMAP:
        record(" unmap");
        snprintf(unmap_call, sizeof unmap_call, "%llu %u %llu %llu %llu", (unsigned long long)stub_call.label,
                 (unsigned)stub_call.count, (unsigned long long)stub_mrs[64], (unsigned long long)stub_mrs[65],
                 (unsigned long long)stub_mrs[66]);
        return answers.unmap;
    case IOMMU_OP_STOP:
        record(" stop");
        return answers.stop;
    case IOMMU_OP_QUERY_MAPPING: {
        record(" query");
        uint64_t i = stub_mrs[64];
        if (i >= held.n) {
            return IOMMU_ERR_NOT_MAPPED;
        }
        memset(stub_mrs, 0, IOMMU_QUERY_MAPPING_VALUES * sizeof stub_mrs[0]);
        stub_mrs[IOMMU_QUERY_MAPPING_DEVICE] = held.device[i];
        stub_mrs[IOMMU_QUERY_MAPPING_IOVA] = held.iova[i];
        stub_mrs[IOMMU_QUERY_MAPPING_LENGTH] = held.len[i];
        return 0;
    }
    default:
        record(" other");
        return IOMMU_ERR_UNKNOWN_OP;
    }
}

static unsigned others;

static void count_other(const struct iommu_queue_done *d, void *ctx)
{
    (void)d;
    *(unsigned *)ctx += 1;
}

/* One case: a fresh queue (or none) with `before` MAPs posted ahead, then the strict UNMAP
 * of device 2's mapping at 0x8000. */
static void run(const char *name, int queue, unsigned before, int silent, uint64_t entry, uint64_t unmap,
                uint64_t stop)
{
    memset(&region, 0, sizeof region);
    made[0] = unmap_entry[0] = unmap_call[0] = 0;
    answers.silent = silent;
    answers.entry = entry;
    answers.unmap = unmap;
    answers.stop = stop;
    others = 0;
    struct iommu_queue q;
    iommu_queue_init(&q, (uintptr_t)&region, sizeof region, 8, 2);
    for (unsigned i = 0; i < before; i++) {
        iommu_queue_post_map(&q, 1, 2, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ, NULL);
    }
    uint64_t err = 99;
    enum iommu_unmap_strict_result r = iommu_unmap_strict(queue ? &q : NULL, 1, 2, 0x8000, count_other, &others, &err);
    printf("strict %s %d %llu others %u made%s\n", name, (int)r, (unsigned long long)err, others, made);
    if (unmap_entry[0]) {
        printf("entry %s %s\n", name, unmap_entry);
    }
    /* The IOMMU PD serves the ring again: an UNMAP entry the call made must not be served
     * after it (a mapping made at its IOVA since would go). */
    if (silent && queue) {
        answers.silent = 0;
        unmaps_served = 0;
        iommu_pd(IOMMU_QUEUE_SERVE);
        struct iommu_queue_done d;
        printf("later %s unmaps %u answers", name, unmaps_served);
        while (iommu_queue_take(&q, &d)) {
            printf(" %llu", (unsigned long long)d.err);
        }
        printf("\n");
    }
    if (unmap_call[0]) {
        printf("call %s %s\n", name, unmap_call);
    }
}

int main(void)
{
    stub_iommu_pd = iommu_pd;
    const uint64_t ok = 0, hw = IOMMU_ERR_HARDWARE, gone = IOMMU_ERR_NOT_MAPPED;
    run("queue", 1, 0, 0, ok, ok, ok);
    /* NOT_MAPPED with the device's mappings elsewhere and another device's at 0x8000:
     * gone, once QUERY_MAPPING has listed them all. */
    const uint64_t devices[] = {1, 2}, elsewhere[] = {0x8000, 0x9000}, pages[] = {0x1000, 0x1000};
    hold(2, devices, elsewhere, pages);
    run("queue_not_mapped", 1, 0, 0, gone, ok, ok);
    run("ring_full", 1, 8, 1, ok, gone, ok);
    /* NOT_MAPPED, and 0x8000 lies inside device 2's mapping at 0x7000: not gone; the
     * call answers the same, and the device is stopped. */
    const uint64_t inside_device[] = {2}, inside_iova[] = {0x7000}, inside_len[] = {0x2000};
    hold(1, inside_device, inside_iova, inside_len);
    run("queue_inside", 1, 0, 0, gone, gone, ok);
    run("call_inside", 0, 0, 0, ok, gone, ok);
    hold(0, NULL, NULL, NULL);
    run("queue_others", 1, 2, 0, ok, ok, ok);
    run("queue_refused", 1, 0, 0, hw, ok, ok);
    run("queue_silent", 1, 0, 1, ok, ok, ok);
    run("no_queue", 0, 0, 0, ok, ok, ok);
    run("stopped", 1, 0, 0, hw, hw, ok);
    run("not_stopped", 1, 0, 0, hw, hw, hw);
    run("stop_refused", 0, 0, 0, ok, hw, IOMMU_ERR_BAD_DEVICE);
    return 0;
}

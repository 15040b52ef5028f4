/* iommu_take_faults across the IOMMU PD's preemption: the ring (read from argv[1]) as the
 * client finds it, and an IOMMU PD that, before it serves the client's ACK_FAULTS, folds
 * argv[2] more faults of the burst into the newest record, up to argv[3], as the service's
 * FaultRing::coalesce does, then answers as FaultRing::ack does. Prints what the client
 * read, for tests/c_header.rs. */
#include <stdio.h>
#include <stdlib.h>

#include "iommu_client.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

static struct iommu_fault_ring ring;
static uint32_t more;
static uint64_t up_to;

static uint64_t iommu_pd(uint64_t label)
{
    if (label != IOMMU_OP_ACK_FAULTS) {
        return IOMMU_ERR_UNKNOWN_OP;
    }
    struct iommu_fault_record *newest = &ring.records[(ring.published - 1) % IOMMU_FAULT_RING];
    newest->repeats += more;
    newest->iova_last = up_to;
    uint64_t upto = stub_mrs[64];
    if (upto >= ring.published) {
        return IOMMU_ERR_OUT_OF_RANGE;
    }
    ring.acked = upto + 1;
    const struct iommu_fault_record *r = &ring.records[upto % IOMMU_FAULT_RING];
    stub_mrs[IOMMU_ACK_FAULTS_SEQ] = r->seq;
    stub_mrs[IOMMU_ACK_FAULTS_REPEATS] = r->repeats;
    stub_mrs[IOMMU_ACK_FAULTS_IOVA_LAST] = r->iova_last;
    return 0;
}

int main(int argc, char **argv)
{
    FILE *f = argc > 3 ? fopen(argv[1], "rb") : NULL;
    if (!f || fread(&ring, sizeof ring, 1, f) != 1) {
        printf("no ring\n");
        return 1;
    }
    fclose(f);
    more = (uint32_t)strtoul(argv[2], NULL, 0);
    up_to = strtoull(argv[3], NULL, 0);
    stub_iommu_pd = iommu_pd;
    struct iommu_fault_record out[4];
    uint64_t next = 0;
    unsigned n = iommu_take_faults(&ring, 1, &next, out, 4);
    for (unsigned i = 0; i < n; i++) {
        printf("fault %llu %#llx %#llx %u\n", (unsigned long long)out[i].seq, (unsigned long long)out[i].iova,
               (unsigned long long)out[i].iova_last, out[i].repeats);
    }
    printf("next %llu acked %llu\n", (unsigned long long)next, (unsigned long long)ring.acked);
    return 0;
}

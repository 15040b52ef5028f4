/* Prints the records of the fault ring at argv[1] as the C PDs print them (pds/include/
 * pd_print.h's print_faults), for tests/c_header.rs to read. With argv[2] and argv[3], the
 * IOMMU PD preempts the reader between its copy and its ACK_FAULTS: it folds argv[2] more
 * faults of the burst into the newest record, up to address argv[3], as the service's
 * FaultRing::coalesce does, and then answers as FaultRing::ack does. */
#include <stdio.h>
#include <stdlib.h>

#include <microkit.h>

static void microkit_dbg_puts(const char *s) { fputs(s, stdout); }

#include "pd_print.h"
#include "ring_file.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

static struct iommu_fault_ring ring;
static uint32_t more;
static uint64_t up_to;

static uint64_t folds_then_acknowledges(uint64_t label)
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
    if (!read_ring(argc > 1 ? argv[1] : NULL, &ring)) {
        return 1;
    }
    if (argc > 3) {
        more = (uint32_t)strtoul(argv[2], NULL, 0);
        up_to = strtoull(argv[3], NULL, 0);
        stub_iommu_pd = folds_then_acknowledges;
    }
    uint64_t next = 0;
    print_faults("drv", (uintptr_t)&ring, 1, &next);
    if (argc > 3) {
        printf("next %llu acked %llu\n", (unsigned long long)next, (unsigned long long)ring.acked);
    }
    return 0;
}

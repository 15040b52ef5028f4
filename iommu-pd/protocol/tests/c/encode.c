/* Calls each function of iommu_client.h with fixed arguments and prints what it sent, for
 * tests/c_header.rs to compare with the Rust encoding of the same requests. */
#include <stdio.h>

#include "iommu_client.h"
#include "ring_file.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16] = {0x100000005, 7, 0, 0, 0, 0, 0, 0, 0, 0};
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

static void sent(const char *what)
{
    printf("%s %llu %u", what, (unsigned long long)stub_call.label, (unsigned)stub_call.count);
    for (unsigned i = 0; i < stub_call.count; i++) {
        printf(" %llu", (unsigned long long)stub_mrs[64 + i]);
    }
    printf("\n");
}

/* The ring as the IOMMU PD wrote it, read from `path`. */
static struct iommu_fault_ring ring;

static void faults(const char *path)
{
    if (!read_ring(path, &ring)) {
        return;
    }
    struct iommu_fault_record out[4];
    uint64_t next = 1;
    unsigned n = iommu_take_faults(&ring, 1, &next, out, 4);
    for (unsigned i = 0; i < n; i++) {
        printf("fault %llu %llu %llu %u %u\n", (unsigned long long)out[i].seq, (unsigned long long)out[i].iova,
               (unsigned long long)out[i].iova_last, out[i].repeats, out[i].stream);
    }
    printf("next %llu\n", (unsigned long long)next);
    sent("take_faults");
}

/* A queue region of 8 slots, as the IOMMU PD left it, read from `path`; written back after. */
static struct {
    struct iommu_queue_header header;
    struct iommu_queue_entry requests[8];
    struct iommu_queue_completion completions[8];
} region __attribute__((aligned(4096)));

static int load(const char *path)
{
    FILE *f = fopen(path, "rb");
    int ok = f && fread(&region, sizeof region, 1, f) == 1;
    if (f) {
        fclose(f);
    }
    return ok;
}

static void store(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(&region, sizeof region, 1, f);
        fclose(f);
    }
}

/* Post a MAP and an UNMAP, notify, ring the doorbell; the region goes back to the test. */
static void queue_post(const char *path)
{
    _Static_assert(sizeof region == IOMMU_QUEUE_REGION_SIZE(8), "the region's size");
    struct iommu_queue q;
    if (!load(path) || iommu_queue_init(&q, (uintptr_t)&region, sizeof region, 8, 2) != 0) {
        printf("no queue\n");
        return;
    }
    printf("queue_init_bad %llu %llu\n", (unsigned long long)iommu_queue_init(&q, (uintptr_t)&region, sizeof region, 6, 2),
           (unsigned long long)iommu_queue_init(&q, (uintptr_t)&region, sizeof region - 1, 8, 2));
    iommu_queue_init(&q, (uintptr_t)&region, sizeof region, 8, 2);
    uint64_t t1 = 9, t2 = 9, taken = 0;
    int a = iommu_queue_post_map(&q, 3, 1, 0x1000, 0x4000, 0x100000, IOMMU_RIGHTS_READ, &t1);
    int b = iommu_queue_post_unmap(&q, 2, 0x8000, &t2);
    printf("queue_posted %d %d %llu %llu %u\n", a, b, (unsigned long long)t1, (unsigned long long)t2,
           iommu_queue_untaken(&q));
    iommu_queue_notify(&q);
    printf("queue_notified %u\n", stub_notified);
    iommu_queue_serve(&q, &taken);
    sent("queue_serve");
    /* Six more fill the ring; the ninth is refused. */
    int full = 0;
    for (int i = 0; i < 7; i++) {
        full += iommu_queue_post_unmap(&q, 0, 0x1000 * (uint64_t)i, NULL);
    }
    printf("queue_full %d %u\n", full, iommu_queue_untaken(&q));
    store(path);
}

/* Take what the IOMMU PD posted (without starting over: iommu_queue_init would drop it). */
static void queue_take(const char *path)
{
    if (!load(path)) {
        printf("no queue\n");
        return;
    }
    struct iommu_queue q = {&region.header, region.requests, region.completions, 8, 0, 2};
    struct iommu_queue_done d;
    while (iommu_queue_take(&q, &d)) {
        printf("queue_done %llu %llu %llu\n", (unsigned long long)d.tag, (unsigned long long)d.err,
               (unsigned long long)d.value);
    }
    store(path);
}

int main(int argc, char **argv)
{
    uint64_t iova = 0;
    uint32_t grant = 0, theirs = 0;
    uint64_t q[IOMMU_QUERY_VALUES];
    uint64_t iovas[2] = {0x1000, 0x8000};
    iommu_map(1, 3, 1, 0x1000, 0x4000, 0x100000, IOMMU_RIGHTS_READ, &iova);
    sent("map");
    iommu_map(1, 0, 0, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    sent("map_any");
    iommu_unmap(1, 2, iovas, 2);
    sent("unmap");
    iommu_grant(1, 1, 4, 0, 0x1000, IOMMU_RIGHTS_WRITE, 2, &grant, &theirs);
    sent("grant");
    iommu_revoke(1, 9);
    sent("revoke");
    iommu_ack_faults(1, 77);
    sent("ack_faults");
    iommu_resume(1, 5);
    sent("resume");
    iommu_query(1, q);
    sent("query");
    iommu_release(1, 2);
    sent("release");
    uint64_t function = 0;
    iommu_stop(1, 3, &function);
    sent("stop");
    uint32_t value = 0;
    iommu_config_read(1, 2, 0x10, 4, &value);
    sent("config_read");
    iommu_config_write(1, 1, 0x04, 2, 0x6, &value);
    sent("config_write");
    printf("reply %llu %u %u\n", (unsigned long long)iova, grant, theirs);
    for (uint64_t err = 0; err < 64; err++) {
        printf("strerror %llu %s\n", (unsigned long long)err, iommu_strerror(err));
    }
    if (argc > 2 && argv[1][0] == 'q') {
        if (argv[1][1] == 'p') {
            queue_post(argv[2]);
        } else {
            queue_take(argv[2]);
        }
        return 0;
    }
    if (argc > 1) {
        faults(argv[1]);
    }
    return 0;
}

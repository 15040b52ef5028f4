/* C's iommu_queue_withdraw while the IOMMU PD serves the ring on another core: a thread
 * plays the IOMMU PD, taking each entry as Rust's Queue::read does (its label swapped for
 * IOMMU_QUEUE_TAKEN), applying the UNMAPs it takes (counted per tag) and answering the
 * withdrawn ones IOMMU_ERR_UNKNOWN_OP; the main thread posts four UNMAPs a round, pauses,
 * and withdraws a few. Prints, for tests/c_header.rs, how many withdrawals won and lost
 * and how many answers broke the rule: a withdrawal that succeeded was applied, one that
 * failed was not, or an entry answered other than once and in order. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "iommu_client.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

#define SLOTS 8
#define ROUNDS 5000
#define PER_ROUND 4

static struct {
    struct iommu_queue_header header;
    struct iommu_queue_entry requests[SLOTS];
    struct iommu_queue_completion completions[SLOTS];
} region __attribute__((aligned(4096)));

static int stopping;
/* How many times the stand-in applied each tag's UNMAP. */
static unsigned applied[ROUNDS * PER_ROUND];

static void *serve(void *arg)
{
    (void)arg;
    uint32_t head = 0, done = 0;
    while (!__atomic_load_n(&stopping, __ATOMIC_RELAXED)) {
        uint32_t posted = __atomic_load_n(&region.header.request_tail, __ATOMIC_ACQUIRE) - head;
        uint32_t room = SLOTS - (done - __atomic_load_n(&region.header.completion_head, __ATOMIC_ACQUIRE));
        uint32_t n = posted < room ? posted : room;
        for (uint32_t i = 0; i < n; i++) {
            struct iommu_queue_entry *e = &region.requests[(head + i) % SLOTS];
            uint64_t tag = __atomic_load_n(&e->tag, __ATOMIC_RELAXED);
            uint64_t label = __atomic_exchange_n(&e->label, IOMMU_QUEUE_TAKEN, __ATOMIC_RELAXED);
            uint64_t err = IOMMU_ERR_UNKNOWN_OP;
            if (label == IOMMU_OP_UNMAP && tag < ROUNDS * PER_ROUND) {
                applied[tag]++;
                err = 0;
            }
            /* The IOMMU PD's work on an entry: the window a withdrawal may fall in. */
            for (volatile unsigned k = 0; k < 200; k++) {
            }
            struct iommu_queue_completion *c = &region.completions[(done + i) % SLOTS];
            __atomic_store_n(&c->tag, tag, __ATOMIC_RELAXED);
            __atomic_store_n(&c->label, err, __ATOMIC_RELAXED);
            __atomic_store_n(&c->value, 0, __ATOMIC_RELAXED);
        }
        head += n;
        done += n;
        __atomic_store_n(&region.header.completion_tail, done, __ATOMIC_RELEASE);
        __atomic_store_n(&region.header.request_head, head, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(void)
{
    struct iommu_queue q;
    iommu_queue_init(&q, (uintptr_t)&region, sizeof region, SLOTS, 1);
    pthread_t server;
    pthread_create(&server, NULL, serve, NULL);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    unsigned won = 0, lost = 0, broken = 0;
    for (unsigned round = 0; round < ROUNDS; round++) {
        uint64_t first = 0, tag;
        for (unsigned j = 0; j < PER_ROUND; j++) {
            iommu_queue_post_unmap(&q, 2, 0x8000 + j * 0x1000, &tag);
            first = j == 0 ? tag : first;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for (volatile unsigned k = 0; k < rng % 2048; k++) {
        }
        int withdrawn[PER_ROUND] = {0};
        for (unsigned j = 0; j < PER_ROUND; j++) {
            if (rng >> (8 + j) & 1) {
                withdrawn[j] = iommu_queue_withdraw(&q, first + j);
                won += withdrawn[j];
                lost += !withdrawn[j];
            }
        }
        for (unsigned j = 0; j < PER_ROUND; j++) {
            struct iommu_queue_done d;
            while (!iommu_queue_take(&q, &d)) {
            }
            unsigned want = withdrawn[j] ? 0 : 1;
            uint64_t err = withdrawn[j] ? IOMMU_ERR_UNKNOWN_OP : 0;
            if (d.tag != first + j || d.err != err || applied[first + j] != want) {
                if (broken++ < 3) {
                    printf("broken round %u entry %u: tag %llu err %llu applied %u, withdrawn %d\n", round, j,
                           (unsigned long long)d.tag, (unsigned long long)d.err, applied[first + j], withdrawn[j]);
                }
            }
        }
    }
    __atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
    pthread_join(server, NULL);
    printf("race rounds %u won %u lost %u broken %u\n", ROUNDS, won, lost, broken);
    return 0;
}

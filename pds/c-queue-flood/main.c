/*
 * A hostile driver for images/queue-fair.xml: it keeps its mapping queue (256 entries) full
 * of MAP and UNMAP entries, each page mapped at its own IOVA and unmapped again, and wakes
 * the IOMMU PD again and again, never waiting, from when the victim starts it (a
 * notification) until the victims have timed their calls: by notifications, then (when a
 * victim says so) by doorbell calls. The
 * IOMMU PD takes at most 64 entries a wake-up; the flood counts the wake-ups after which
 * entries were still untaken, which is that bound at work.
 */
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_print.h"
#include "queue_fair.h"
#include "queue_flood_iommu.h"

#define IOMMU QUEUE_FLOOD_IOMMU_CHANNEL
#define MY_DEVICE QUEUE_FLOOD_DEV_FLOOD_EDU
#define MY_PAGES QUEUE_FLOOD_CAP_FLOOD_PAGES
#define PAGES (QUEUE_FLOOD_CAP_FLOOD_PAGES_SIZE / 0x1000)
#define IOVA_BASE 0x100000000ull
/* Whatever the victim does, the flood ends after this many entries. */
#define LIMIT (1ull << 20)

uintptr_t iommu_queue __attribute__((section(".data")));
uint64_t iommu_queue_size __attribute__((section(".data")));
uintptr_t scoreboard __attribute__((section(".data")));

static struct iommu_queue q;
static int have_queue;

void init(void)
{
    uint64_t err = iommu_queue_init(&q, iommu_queue, iommu_queue_size, QUEUE_FLOOD_QUEUE_ENTRIES, IOMMU);
    if (err) {
        microkit_dbg_puts("queue-flood: no mapping queue: ");
        microkit_dbg_puts(iommu_strerror(err));
        microkit_dbg_puts("\n");
        return;
    }
    have_queue = 1;
}

/* The flood, once the victim has timed its calls alone and notifies. */
static void flood(void)
{
    struct scoreboard *board = (struct scoreboard *)scoreboard;
    uint64_t k = 0, done = 0, refused = 0, wakeups = 0, calls = 0, untaken = 0;
    while (!board_get(&board->victim_done) && done < LIMIT) {
        /* Fill the ring: entry k maps page (k / 2) % PAGES at its own IOVA if k is even,
         * and unmaps it if odd. */
        for (;;) {
            uint64_t page = (k / 2) % PAGES;
            uint64_t iova = IOVA_BASE + page * 0x1000;
            int full = (k % 2 == 0) ? iommu_queue_post_map(&q, MY_PAGES, MY_DEVICE, page * 0x1000, 0x1000, iova,
                                                           IOMMU_RIGHTS_READ_WRITE, 0)
                                    : iommu_queue_post_unmap(&q, MY_DEVICE, iova, 0);
            if (full) {
                break;
            }
            k++;
        }
        uint64_t t0 = timer_ticks();
        if (board_get(&board->doorbell)) {
            iommu_queue_serve(&q, 0);
            calls++;
        } else {
            iommu_queue_notify(&q);
            wakeups++;
        }
        uint64_t took = timer_ticks() - t0;
        if (took > board_get(&board->flood_wake_max)) {
            board_set(&board->flood_wake_max, took);
        }
        if (board_get(&board->urgent_rounds) && took > board_get(&board->flood_wake_max_urgent)) {
            board_set(&board->flood_wake_max_urgent, took);
        }
        struct iommu_queue_done d;
        while (iommu_queue_take(&q, &d)) {
            done++;
            refused += d.err != 0;
        }
        untaken += iommu_queue_untaken(&q) > 0;
        board_set(&board->flood_entries, done);
    }
    microkit_dbg_puts("queue-flood: ");
    put_dec(done);
    microkit_dbg_puts(" entries completed, ");
    put_dec(refused);
    microkit_dbg_puts(" refused, through ");
    put_dec(wakeups);
    microkit_dbg_puts(" notifications and ");
    put_dec(calls);
    microkit_dbg_puts(" doorbell calls, ");
    put_dec(untaken);
    microkit_dbg_puts(" of them with entries left untaken (the IOMMU PD takes at most 64 a wake-up)\n");
    board_set(&board->flood_done, 1);
}

/* The victim's word starts the flood; the IOMMU PD's notifications (completions posted)
 * need nothing: the flood reads the completions right after each of its own. */
void notified(microkit_channel ch)
{
    if (ch == FLOOD_CHANNEL && have_queue) {
        flood();
    }
}

/*
 * The victim of images/queue-fair.xml: MAP and UNMAP calls, one page, each pair timed with
 * the generic timer; first with the core to itself (the flood waits for its word), then
 * while the flood floods its queue by notifications, then by doorbell calls, the two
 * sharing the core in turns. It starts when the urgent victim (pds/c-queue-urgent) has
 * timed its interrupts alone, and leaves the flood running for that one's flooded rounds.
 * Each call must be answered, and answered Ok, either way.
 */
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_print.h"
#include "queue_fair.h"
#include "queue_flood_iommu.h" /* QUEUE_FLOOD_QUEUE_SHARE: the flood's share, from the description */
#include "queue_victim_iommu.h"

#define IOMMU QUEUE_VICTIM_IOMMU_CHANNEL
#define MY_DEVICE QUEUE_VICTIM_DEV_VICTIM_EDU
#define MY_PAGE QUEUE_VICTIM_CAP_VICTIM_PAGE
#define CALLS 2000

uintptr_t scoreboard __attribute__((section(".data")));

static uint64_t alone[CALLS], flooded[CALLS], rung[CALLS];

/* Time CALLS MAP + UNMAP pairs into `out`; how many were not answered Ok. */
/* Between pairs, a different few instructions each time. The image's clock counts
 * instructions, so without this every pair takes exactly as long, and the victim's
 * timeslice can end at the same point of a pair every time. When that point is inside the
 * IOMMU PD (priority 254, running on the victim's scheduling context), seL4 ends the slice
 * by putting the IOMMU PD back on its own priority's queue, which it has alone, so it runs
 * on and the flood, at the victim's priority, never gets the core: the flood starved
 * for whole rounds (0 entries) in one build, a phase lock a real clock would not hold.
 * The spins are a multiplicative hash of the pair's number (0 to 127, no period over the
 * round): (i * 37) mod 101, periodic, locked in phase again in the third round when the
 * index round changed the IOMMU PD's instruction counts. */
static void jitter(unsigned i)
{
    for (volatile unsigned k = 0; k < (i * 2654435761u) >> 25; k++) {
    }
}

static unsigned time_calls(uint64_t *out)
{
    unsigned bad = 0;
    for (unsigned i = 0; i < CALLS; i++) {
        jitter(i);
        uint64_t iova = 0;
        uint64_t t0 = timer_ticks();
        uint64_t err = iommu_map(IOMMU, MY_PAGE, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
        if (err == 0) {
            err = iommu_unmap(IOMMU, MY_DEVICE, &iova, 1);
        }
        out[i] = timer_ticks() - t0;
        bad += err != 0;
    }
    return bad;
}

static void say(const char *when, uint64_t *t, unsigned bad)
{
    sort_ticks(t, CALLS);
    microkit_dbg_puts("queue-victim: ");
    put_dec(CALLS);
    microkit_dbg_puts(" MAP+UNMAP call pairs ");
    microkit_dbg_puts(when);
    microkit_dbg_puts(bad ? ", SOME REFUSED" : ", all answered ok");
    microkit_dbg_puts(": median ");
    put_dec(timer_us(t[CALLS / 2]));
    microkit_dbg_puts(" us, 99th percentile ");
    put_dec(timer_us(t[CALLS * 99 / 100]));
    microkit_dbg_puts(" us, max ");
    put_dec(timer_us(t[CALLS - 1]));
    microkit_dbg_puts(" us\n");
}

/* The bound on a pair during the flood (`say` has sorted the rounds): its own time alone
 * (P, the longest), the flood's turn on the core (S, its budget), the full batches the
 * IOMMU PD's pacing lets the flood's queue take in that turn (S / SHARE, SHARE the flood's
 * <dma_queue share> in images/queue-fair.xml, which the IOMMU PD paces it by), and one batch in
 * progress when the pair began (B, the flood's longest wake-up): F = P + S + S/SHARE + B.
 * What the pair measures beyond F is the kernel's: the wake-ups a turn can fit (each costs
 * the IOMMU PD more than the notifier) and, by doorbell calls, turns that end inside the
 * IOMMU PD (seL4 refills the budget there and the flood goes on). A correctness bound,
 * not a speed target: each flooded round's longest pair must be within 16 F. */
#define BOUND_TIMES 16
static void judge(uint64_t p, uint64_t b, uint64_t notified_max, uint64_t rung_max)
{
    uint64_t s = timer_from_us(SLICE_US);
    uint64_t f = p + s + s / QUEUE_FLOOD_QUEUE_SHARE + b;
    microkit_dbg_puts("queue-victim: the bound F = P + S + S/");
    put_dec(QUEUE_FLOOD_QUEUE_SHARE);
    microkit_dbg_puts(" + B = ");
    put_dec(timer_us(p));
    microkit_dbg_puts(" + ");
    put_dec(timer_us(s));
    microkit_dbg_puts(" + ");
    put_dec(timer_us(s / QUEUE_FLOOD_QUEUE_SHARE));
    microkit_dbg_puts(" + ");
    put_dec(timer_us(b));
    say_verdict("pair", f, notified_max, rung_max, BOUND_TIMES);
}

/* Rounds one to three, once the urgent victim has timed its interrupts alone: the flood is
 * left running, by notifications, for the urgent victim's flooded rounds. */
static unsigned bad_alone, bad_flooded, bad_rung;
static uint64_t during, during_rung;

static void rounds(void)
{
    struct scoreboard *board = (struct scoreboard *)scoreboard;
    /* The flood waits for its notification: these calls have the core to themselves. */
    bad_alone = time_calls(alone);
    microkit_notify(FLOOD_CHANNEL);
    /* The flood is under way before the second round is timed. */
    for (uint64_t spins = 0; board_get(&board->flood_entries) == 0 && spins < (1ull << 32); spins++) {
    }
    uint64_t before = board_get(&board->flood_entries);
    bad_flooded = time_calls(flooded);
    during = board_get(&board->flood_entries) - before;
    /* Third round: the flood rings the doorbell instead, its batches on its own time. */
    board_set(&board->doorbell, 1);
    before = board_get(&board->flood_entries);
    bad_rung = time_calls(rung);
    during_rung = board_get(&board->flood_entries) - before;
    board_set(&board->doorbell, 0);
}

/* Once the urgent victim has timed its flooded rounds and stopped the flood: the results,
 * after the flood's own line. */
static void results(void)
{
    struct scoreboard *board = (struct scoreboard *)scoreboard;
    for (uint64_t spins = 0; !board_get(&board->flood_done) && spins < (1ull << 32); spins++) {
    }
    say("with the flood held back", alone, bad_alone);
    microkit_dbg_puts("queue-victim: the flood had ");
    put_dec(during);
    microkit_dbg_puts(" entries completed while the second round was timed\n");
    say("during the flood", flooded, bad_flooded);
    microkit_dbg_puts("queue-victim: the flood had ");
    put_dec(during_rung);
    microkit_dbg_puts(" entries completed while the third round was timed (by doorbell calls)\n");
    say("during the flood by doorbell calls", rung, bad_rung);
    judge(alone[CALLS - 1], board_get(&board->flood_wake_max), flooded[CALLS - 1], rung[CALLS - 1]);
}

void init(void)
{
    /* It has no queue: the doorbell is refused. */
    struct iommu_queue none = {0, 0, 0, 0, 0, IOMMU};
    uint64_t refused = iommu_queue_serve(&none, 0);
    microkit_dbg_puts("queue-victim: the doorbell call without a queue: ");
    microkit_dbg_puts(iommu_strerror(refused));
    microkit_dbg_puts("\n");
}

/* The urgent victim's word: first that it has timed its interrupts alone (the rounds here
 * follow, and the urgent victim is told when they are done), then that its flooded rounds
 * are done too. */
void notified(microkit_channel ch)
{
    static int step;
    if (ch != URGENT_CHANNEL) {
        return;
    }
    if (step++ == 0) {
        rounds();
        microkit_notify(URGENT_CHANNEL);
    } else {
        results();
    }
}

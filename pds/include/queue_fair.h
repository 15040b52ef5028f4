/* What images/queue-fair.xml's PDs share: the scoreboard page they map, their channels, the generic
 * timer (seL4 exports its count and the EL1 physical timer to user level), sorting, and decimal
 * output. */
#pragma once
#include <stdint.h>

#include <microkit.h>

struct scoreboard {
    /* Entries of the flood's queue completed so far (the flood's). */
    uint64_t flood_entries;
    /* Set by the victim for its third round: the flood rings the doorbell (a call, its
     * batches served on the flood's own time) instead of notifying. */
    uint64_t doorbell;
    /* Set by the victim when it has timed its calls during the flood: the flood stops. */
    uint64_t victim_done;
    /* Set by the flood once it has stopped and said so: the victim prints after it, so
     * the two PDs' lines do not interleave on the console. */
    uint64_t flood_done;
    /* The longest of the flood's wake-ups (a notification, or a doorbell call, until it
     * returned: the IOMMU PD's batch and the kernel's work around it), in timer ticks. */
    uint64_t flood_wake_max;
    /* Set by the urgent victim (above the flood's priority) while it times its flooded
     * rounds; the flood's longest wake-up meanwhile, by the flood's clock (which holds
     * whatever ran before the flood ran again: the IOMMU PD's batch, the urgent victim's
     * pair, a turn of another PD's). Said beside the urgent victim's bound, whose B is the
     * IOMMU PD's own timing instead. */
    uint64_t urgent_rounds;
    uint64_t flood_wake_max_urgent;
};

/* The scheduling context each of the two has (images/queue-fair.xml: budget = period, so
 * seL4 shares the core between them in turns of this long). */
#define SLICE_US 1000

/* The channel between the victim and the flood (images/queue-fair.xml): the victim starts
 * the flood on it. */
#define FLOOD_CHANNEL 1
/* The channel between the victim and the urgent victim: each tells the other its rounds are
 * done (the victim's id for it, and the urgent victim's for the victim). */
#define URGENT_CHANNEL 2
#define VICTIM_CHANNEL 1

static inline uint64_t board_get(uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void board_set(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint64_t timer_ticks(void)
{
    uint64_t v;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(v));
    return v;
}

static inline uint64_t timer_us(uint64_t ticks)
{
    uint64_t hz;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(hz));
    return hz ? ticks * 1000000 / hz : 0;
}

static inline uint64_t timer_from_us(uint64_t us)
{
    uint64_t hz;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(hz));
    return hz * us / 1000000;
}

/* Sort `n` times, for their median and percentiles. */
static inline void sort_ticks(uint64_t *a, unsigned n)
{
    for (unsigned i = 1; i < n; i++) {
        uint64_t v = a[i];
        unsigned j = i;
        for (; j > 0 && a[j - 1] > v; j--) {
            a[j] = a[j - 1];
        }
        a[j] = v;
    }
}

static inline void put_dec(uint64_t v)
{
    char s[21];
    int n = 20;
    s[n] = 0;
    do {
        s[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    microkit_dbg_puts(s + n);
}

/* The end of a bound's line, after its terms: ` = F us; the longest WHAT during the flood
 * ... notified, ... by doorbell calls: within (or BEYOND) TIMES F`, each longest also in
 * tenths of F. */
static inline void say_verdict(const char *what, uint64_t f, uint64_t notified, uint64_t rung, uint64_t times)
{
    microkit_dbg_puts(" = ");
    put_dec(timer_us(f));
    microkit_dbg_puts(" us; the longest ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(" during the flood ");
    put_dec(timer_us(notified));
    microkit_dbg_puts(" us (");
    put_dec(f ? notified * 10 / f : 0);
    microkit_dbg_puts("/10 F) notified, ");
    put_dec(timer_us(rung));
    microkit_dbg_puts(" us (");
    put_dec(f ? rung * 10 / f : 0);
    microkit_dbg_puts("/10 F) by doorbell calls: ");
    microkit_dbg_puts(notified <= times * f && rung <= times * f ? "within " : "BEYOND ");
    put_dec(times);
    microkit_dbg_puts(" F\n");
}

/* What images/queue-fair.xml's two PDs share: the scoreboard page both map, their channel, the generic
 * timer (seL4 exports its count to user level), and decimal output. */
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
};

/* The scheduling context each of the two has (images/queue-fair.xml: budget = period, so
 * seL4 shares the core between them in turns of this long). */
#define SLICE_US 1000

/* The channel between them (images/queue-fair.xml): the victim starts the flood on it. */
#define FLOOD_CHANNEL 1

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

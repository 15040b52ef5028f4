/*
 * The urgent victim of images/queue-fair.xml, a driver above the flood's priority: on each
 * interrupt of the EL1 physical timer (which seL4 exports to user level) it makes one
 * MAP+UNMAP call pair, and times it from the moment the interrupt was raised (the deadline
 * it set) to the UNMAP's reply. First alone (the flood not yet started), then, once the
 * victim has timed its rounds, during the flood by notifications and then by doorbell
 * calls. Being above the flood, it should wait only for a wake-up of the flood's already
 * in progress when its interrupt comes: the IOMMU PD's batch runs at the IOMMU PD's
 * priority, and the kernel switches to this PD as soon as it returns. The bound:
 * F = L + B, its own longest alone (L, interrupt to reply) and the flood's longest wake-up
 * during these rounds (B); each flooded round's longest must be within 4 F, where a
 * turn of the flood's (1 ms, about 8 F) would not fit.
 */
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_print.h"
#include "queue_fair.h"
#include "queue_urgent_iommu.h"

#define IOMMU QUEUE_URGENT_IOMMU_CHANNEL
#define MY_DEVICE QUEUE_URGENT_DEV_URGENT_EDU
#define MY_PAGE QUEUE_URGENT_CAP_URGENT_PAGE
/* The timer's interrupt (PPI 30) in images/queue-fair.xml. */
#define TIMER_IRQ 2
#define SAMPLES 200
#define BOUND_TIMES 4

uintptr_t scoreboard __attribute__((section(".data")));

enum { ALONE, NOTIFIED, DOORBELL, ROUNDS };
static const char *const when[ROUNDS] = {"alone", "during the flood", "during the flood by doorbell calls"};
static uint64_t latency[ROUNDS][SAMPLES];
static unsigned bad[ROUNDS];
static unsigned round, sample;
static uint64_t deadline, flood_before;

/* Raise PPI 30 once the count reaches `at` (ENABLE = 1, IMASK = 0). */
static void timer_deadline(uint64_t at)
{
    __asm__ volatile("msr cntp_cval_el0, %0; msr cntp_ctl_el0, %1; isb" : : "r"(at), "r"(1ull));
}

static void timer_stop(void)
{
    __asm__ volatile("msr cntp_ctl_el0, %0; isb" : : "r"(0ull));
}

/* The next interrupt 1 to 1.5 ms on, varied so that the interrupts fall at every point of
 * the flood's loop. */
static void arm(void)
{
    deadline = timer_ticks() + timer_from_us(1000 + (sample * 37) % 500);
    timer_deadline(deadline);
}

static uint64_t pair(void)
{
    uint64_t iova = 0;
    uint64_t err = iommu_map(IOMMU, MY_PAGE, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    if (err == 0) {
        err = iommu_unmap(IOMMU, MY_DEVICE, &iova, 1);
    }
    return err;
}

static void say(unsigned r)
{
    sort_ticks(latency[r], SAMPLES);
    microkit_dbg_puts("queue-urgent: ");
    put_dec(SAMPLES);
    microkit_dbg_puts(" MAP+UNMAP call pairs on a timer interrupt each, ");
    microkit_dbg_puts(when[r]);
    microkit_dbg_puts(bad[r] ? ", SOME REFUSED" : ", all answered ok");
    microkit_dbg_puts(": from the interrupt to the UNMAP's reply median ");
    put_dec(timer_us(latency[r][SAMPLES / 2]));
    microkit_dbg_puts(" us, max ");
    put_dec(timer_us(latency[r][SAMPLES - 1]));
    microkit_dbg_puts(" us\n");
}

static void report(void)
{
    struct scoreboard *board = (struct scoreboard *)scoreboard;
    for (unsigned r = 0; r < ROUNDS; r++) {
        say(r);
    }
    microkit_dbg_puts("queue-urgent: the flood had ");
    put_dec(board_get(&board->flood_entries) - flood_before);
    microkit_dbg_puts(" entries completed while its flooded rounds were timed\n");
    uint64_t l = latency[ALONE][SAMPLES - 1];
    uint64_t b = board_get(&board->flood_wake_max_urgent);
    uint64_t f = l + b;
    uint64_t notified = latency[NOTIFIED][SAMPLES - 1], rung = latency[DOORBELL][SAMPLES - 1];
    microkit_dbg_puts("queue-urgent: above the flood's priority, the bound F = L + B = ");
    put_dec(timer_us(l));
    microkit_dbg_puts(" + ");
    put_dec(timer_us(b));
    say_verdict("wait", f, notified, rung, BOUND_TIMES);
}

void init(void)
{
    arm();
}

void notified(microkit_channel ch)
{
    struct scoreboard *board = (struct scoreboard *)scoreboard;
    if (ch == VICTIM_CHANNEL && round == NOTIFIED) {
        /* The victim's rounds are done; the flood runs on, by notifications. */
        flood_before = board_get(&board->flood_entries);
        board_set(&board->urgent_rounds, 1);
        arm();
        return;
    }
    if (ch != TIMER_IRQ || round >= ROUNDS) {
        return;
    }
    bad[round] += pair() != 0;
    latency[round][sample] = timer_ticks() - deadline;
    sample++;
    if (sample < SAMPLES) {
        arm();
        microkit_irq_ack(TIMER_IRQ);
        return;
    }
    timer_stop();
    microkit_irq_ack(TIMER_IRQ);
    sample = 0;
    round++;
    if (round == NOTIFIED) {
        /* Alone done: the victim times its rounds, and says when. */
        microkit_notify(VICTIM_CHANNEL);
    } else if (round == DOORBELL) {
        board_set(&board->doorbell, 1);
        arm();
    } else {
        board_set(&board->urgent_rounds, 0);
        report();
        /* The flood stops, and the victim prints after its line. */
        board_set(&board->victim_done, 1);
        microkit_notify(VICTIM_CHANNEL);
    }
}

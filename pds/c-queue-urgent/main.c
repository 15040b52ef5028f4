/*
 * The urgent victim of images/queue-fair.xml, a driver above the flood's priority: on each
 * interrupt of the EL1 physical timer (which seL4 exports to user level) it makes one
 * MAP+UNMAP call pair, and times it from the moment the interrupt was raised (the deadline
 * it set) to the UNMAP's reply. First alone (the flood not yet started), then, once the
 * victim has timed its rounds, during the flood by notifications and then by doorbell
 * calls. Being above the flood, it should wait only for a wake-up of the flood's already
 * in progress when its interrupt comes: the IOMMU PD's batch runs at the IOMMU PD's
 * priority, and the kernel switches to this PD as soon as it returns. The bound, per
 * interrupt: F = L + B, its own longest alone (L, interrupt to reply) and what was left,
 * after the interrupt, of the IOMMU PD's wake-up in progress (B), as the IOMMU PD timed it
 * (a measurement build's WAKE_UP, asked first thing on each interrupt: the wake-up before
 * that call is the one the interrupt waited for, if any); each wait must be within 4 F.
 * A turn of the flood's (1 ms) would not fit: with this PD at the flood's priority, the
 * wake-up before its call is the flood's last, begun after the interrupt, which counts
 * only from its start, while the wait holds the whole turn.
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
#define SAMPLES_TEXT "200"
#define BOUND_TIMES 4

uintptr_t scoreboard __attribute__((section(".data")));

enum { ALONE, NOTIFIED, DOORBELL, ROUNDS };
static const char *const when[ROUNDS] = {"alone", "during the flood", "during the flood by doorbell calls"};
static uint64_t latency[ROUNDS][SAMPLES];
/* Each wait's B: what was left after the interrupt of the IOMMU PD's wake-up before this
 * PD's first call, as the IOMMU PD timed it; 0 if it ended before the interrupt. */
static uint64_t in_progress[ROUNDS][SAMPLES];
static unsigned bad[ROUNDS];
static unsigned round, sample;
static uint64_t deadline, flood_before;
/* The IOMMU PD's longest wake-up (prints included) from the start of the flooded rounds. */
static uint64_t iommu_longest;

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

/* Asked first thing on an interrupt: the IOMMU PD's wake-up before this call (when it
 * began and ended), and its longest since the last ask. Err, or 0 and the three values. */
static uint64_t wake_up(uint64_t *began, uint64_t *ended, uint64_t *longest)
{
    uint64_t err = iommu_call(IOMMU, IOMMU_MEASURE_WAKE_UP, 0);
    if (err == 0) {
        *began = microkit_mr_get(IOMMU_MEASURE_WAKE_UP_BEGAN);
        *ended = microkit_mr_get(IOMMU_MEASURE_WAKE_UP_ENDED);
        *longest = microkit_mr_get(IOMMU_MEASURE_WAKE_UP_LONGEST);
    }
    return err;
}

/* What of the wake-up [began, ended] came after the interrupt at `at`: the part of it the
 * interrupt had to wait for. */
static uint64_t after(uint64_t at, uint64_t began, uint64_t ended)
{
    uint64_t from = began > at ? began : at;
    return ended > from ? ended - from : 0;
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

/* The flooded round `r`'s wait furthest over its F = l + B (in tenths of F), said as
 * "W us with B = b us (n/10 F)"; 1 if every wait is within BOUND_TIMES F. */
static int judge(unsigned r, uint64_t l)
{
    unsigned worst = 0;
    uint64_t worst_tenths = 0;
    int within = 1;
    for (unsigned i = 0; i < SAMPLES; i++) {
        uint64_t f = l + in_progress[r][i];
        uint64_t tenths = f ? latency[r][i] * 10 / f : 0;
        within &= latency[r][i] <= BOUND_TIMES * f;
        if (tenths > worst_tenths) {
            worst_tenths = tenths;
            worst = i;
        }
    }
    put_dec(timer_us(latency[r][worst]));
    microkit_dbg_puts(" us with B = ");
    put_dec(timer_us(in_progress[r][worst]));
    microkit_dbg_puts(" us (");
    put_dec(worst_tenths);
    microkit_dbg_puts("/10 F)");
    return within;
}

static void report(void)
{
    struct scoreboard *board = (struct scoreboard *)scoreboard;
    uint64_t l = 0, b = 0;
    for (unsigned i = 0; i < SAMPLES; i++) {
        l = latency[ALONE][i] > l ? latency[ALONE][i] : l;
        for (unsigned r = NOTIFIED; r < ROUNDS; r++) {
            b = in_progress[r][i] > b ? in_progress[r][i] : b;
        }
    }
    microkit_dbg_puts("queue-urgent: above the flood's priority, the bound per interrupt F = L + B, L = ");
    put_dec(timer_us(l));
    microkit_dbg_puts(" us (its own longest alone), B = what was left of the IOMMU PD's wake-up in progress, as the "
                      "IOMMU PD timed it (at most ");
    put_dec(timer_us(b));
    microkit_dbg_puts(" us; its longest wake-up in these rounds ");
    put_dec(timer_us(iommu_longest));
    microkit_dbg_puts(" us, prints included); the wait furthest over its F during the flood ");
    int within = judge(NOTIFIED, l);
    microkit_dbg_puts(" notified, ");
    within &= judge(DOORBELL, l);
    microkit_dbg_puts(within ? " by doorbell calls: every wait within " : " by doorbell calls: A WAIT BEYOND ");
    put_dec(BOUND_TIMES);
    microkit_dbg_puts(" F\n");
    /* What the bound rests on: waits that did hold part of a wake-up of the IOMMU PD
     * (with none, it would judge L alone), and no B longer than its wait (the wake-up
     * ended before this PD's first call, inside the wait: a B beyond it is a wrong time). */
    unsigned during[ROUNDS] = {0}, longer = 0;
    for (unsigned r = NOTIFIED; r < ROUNDS; r++) {
        for (unsigned i = 0; i < SAMPLES; i++) {
            during[r] += in_progress[r][i] > 0;
            longer += in_progress[r][i] > latency[r][i];
        }
    }
    microkit_dbg_puts("queue-urgent: waits that held part of a wake-up of the IOMMU PD (B > 0): ");
    put_dec(during[NOTIFIED]);
    microkit_dbg_puts(" of " SAMPLES_TEXT " notified, ");
    put_dec(during[DOORBELL]);
    microkit_dbg_puts(" of " SAMPLES_TEXT " by doorbell calls; a B longer than its wait: ");
    put_dec(longer);
    microkit_dbg_puts("\n");
    for (unsigned r = 0; r < ROUNDS; r++) {
        say(r);
    }
    microkit_dbg_puts("queue-urgent: the flood had ");
    put_dec(board_get(&board->flood_entries) - flood_before);
    microkit_dbg_puts(" entries completed while its flooded rounds were timed; its own timing of its longest wake-up "
                      "meanwhile ");
    put_dec(timer_us(board_get(&board->flood_wake_max_urgent)));
    microkit_dbg_puts(" us\n");
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
        /* The IOMMU PD's longest wake-up counts from here. */
        uint64_t began, ended, longest;
        bad[NOTIFIED] += wake_up(&began, &ended, &longest) != 0;
        arm();
        return;
    }
    if (ch != TIMER_IRQ || round >= ROUNDS) {
        return;
    }
    uint64_t began = 0, ended = 0, longest = 0;
    uint64_t err = wake_up(&began, &ended, &longest);
    if (err == 0) {
        err = pair();
    }
    bad[round] += err != 0;
    latency[round][sample] = timer_ticks() - deadline;
    in_progress[round][sample] = after(deadline, began, ended);
    if (round != ALONE && longest > iommu_longest) {
        iommu_longest = longest;
    }
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

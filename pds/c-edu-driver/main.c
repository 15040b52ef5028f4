/*
 * An edu driver protection domain in C, on libmicrokit and iommu_client.h, with no Rust
 * in it: it maps its buffer through the IOMMU service, has its device copy bytes through
 * the mapping, sees DMA past the mapping and after UNMAP blocked, does the same through its
 * mapping queue, reads the fault records the IOMMU PD routes to it, and lends a page to the
 * (Rust) edu driver and takes it back. Then it lends the page again and leaves it lent
 * (the edu driver's device writes into it), crashes with its queue in use, and once the
 * IOMMU PD has restarted it, shows that nothing of its first run reaches anything and that
 * its queue works again, and tells the edu driver it ran again, which then finds that its
 * device no longer reaches the lent page (pds/edu-driver/src/borrowed.rs).
 */
#include <stdint.h>

#include <microkit.h>

#include "c_edu_driver_iommu.h"
#include "edu.h"
#include "iommu_client.h"
#include "pd_print.h"

/* Its channel to the IOMMU PD, its device and capability, and the client it may lend to,
 * with the devices that client may map for: the numbers `iommu-sdf build` writes for it
 * from system.xml (c_edu_driver_iommu.h), not counted by hand. */
#define IOMMU C_EDU_DRIVER_IOMMU_CHANNEL
#define MY_DEVICE C_EDU_DRIVER_DEV_EDU_C
#define MY_BUFFERS C_EDU_DRIVER_CAP_C_BUFFERS
#define EDU_DRIVER IOMMU_CLIENT_EDU_DRIVER
#define EDU_DRIVER_DEVICES (1u << IOMMU_DEVICE_EDU_A)
/* Its channel to the edu driver (system.xml), its protected procedure calls to it, as
 * pds/edu-driver/src/borrowed.rs reads them: "I lent you a page" (mr0: the handle the
 * grant gave the edu driver), and "I ran again". */
#define BORROWER 1
#define BORROWER_LENT 1
#define BORROWER_LENDER_RESTARTED 2

/* Where the IOMMU PD puts its edu's BAR0: the fourth MiB of the PCI memory window, which
 * the description maps at edu_bar. */
#define BAR0 0x10300000u
/* Command: memory space and bus master (the IOMMU PD left both off). */
#define COMMAND_MEMORY_MASTER 0x6u

/* Set by the Microkit tool (setvar_vaddr); in .data so it has bytes to patch. */
uintptr_t edu_bar __attribute__((section(".data")));
uintptr_t buffers __attribute__((section(".data")));
uintptr_t fault_ring __attribute__((section(".data")));
/* Its mapping queue (<dma_queue>), mapped by the description. */
uintptr_t iommu_queue __attribute__((section(".data")));
uint64_t iommu_queue_size __attribute__((section(".data")));

static uint64_t next_fault;

static void say(const char *what, uint64_t err)
{
    put_result("c-edu", what, err);
}

/* The next completion, waiting for it: the IOMMU PD runs at a higher priority on this core,
 * so once the doorbell call returns, or the notification, it has posted it; a bound all
 * the same, in case it is not serving. 1 if one was taken. */
static int next_done(struct iommu_queue *q, struct iommu_queue_done *d)
{
    for (unsigned spins = 0; spins < 1000000; spins++) {
        if (iommu_queue_take(q, d)) {
            return 1;
        }
    }
    return 0;
}

/* Its mapping queue, started with iommu_queue_init (from what the IOMMU PD published): 1,
 * or 0 with the reason said as "c-edu: <what>: error ...". */
static int start_queue(struct iommu_queue *q, const char *what)
{
    uint64_t err = iommu_queue_init(q, iommu_queue, iommu_queue_size, C_EDU_DRIVER_QUEUE_ENTRIES, IOMMU);
    if (err) {
        say(what, err);
    }
    return err == 0;
}

/* A MAP of its page through its queue at `iova` (or IOMMU_IOVA_ANY), served by the
 * doorbell call, and its completion waited for; said as "c-edu: <what>: ok" or what went
 * wrong. The IOVA it got, or 0 (never in its device's window) if it got none. */
static uint64_t queued_map(struct iommu_queue *q, uint64_t iova, const char *what)
{
    uint64_t tag = 0, taken = 0;
    struct iommu_queue_done d = {0, 0, 0};
    if (iommu_queue_post_map(q, MY_BUFFERS, MY_DEVICE, 0, 0x1000, iova, IOMMU_RIGHTS_READ_WRITE, &tag) != 0) {
        microkit_dbg_puts("c-edu: its mapping queue is full\n");
        return 0;
    }
    uint64_t err = iommu_queue_serve(q, &taken);
    if (err == 0 && (!next_done(q, &d) || d.tag != tag)) {
        microkit_dbg_puts("c-edu: no completion for its queued MAP\n");
        return 0;
    }
    say(err ? "the doorbell call" : what, err ? err : d.err);
    return err || d.err ? 0 : d.value;
}

/* Where it has its queue map its page just before it crashes, IOVAs it names (in its
 * device's window, far above those the service chooses for it, which start at the
 * window's base), so the checks after its restart know where to look: */
#define LEFT_TAKEN 0x100080000ull   /* a queued MAP served, its completion taken */
#define LEFT_UNTAKEN 0x100090000ull /* a queued MAP served, its completion never taken */
#define LEFT_POSTED 0x1000a0000ull  /* a queued MAP posted, never served */
/* Where in its page the writes after its restart aim: clear of the bytes edu_round_trip
 * uses (0x0 and 0x800), and of the offset the first run's queue check writes at (0x400),
 * so each fault line names only its own check. */
#define PROBE 0x600u

/* Its queue's indices as they are in the shared region: requests posted and taken,
 * completions posted and read. */
struct queue_state {
    uint32_t posted, taken, done, read;
};

static struct queue_state queue_state(void)
{
    volatile struct iommu_queue_header *h = (volatile struct iommu_queue_header *)iommu_queue;
    struct queue_state s = {
        __atomic_load_n(&h->request_tail, __ATOMIC_RELAXED),
        __atomic_load_n(&h->request_head, __ATOMIC_ACQUIRE),
        __atomic_load_n(&h->completion_tail, __ATOMIC_ACQUIRE),
        __atomic_load_n(&h->completion_head, __ATOMIC_RELAXED),
    };
    return s;
}

/* MAP through the mapping queue (the doorbell call), DMA through that mapping, UNMAP
 * through the queue (a notification), and DMA at the old IOVA once the UNMAP's completion
 * says it is done: blocked (the IOMMU PD reports the fault). */
static void through_the_queue(volatile uint8_t *page)
{
    struct iommu_queue q;
    if (!start_queue(&q, "its mapping queue")) {
        return;
    }
    uint64_t iova = queued_map(&q, IOMMU_IOVA_ANY, "MAP through its mapping queue (the doorbell call), completed");
    if (iova == 0) {
        return;
    }
    uint64_t tag = 0;
    struct iommu_queue_done d = {0, 0, 0};
    microkit_dbg_puts("c-edu: the queued MAP put its page at iova ");
    put_hex(iova);
    microkit_dbg_puts("\n");
    microkit_dbg_puts(edu_round_trip(edu_bar, page, iova, 0x3c)
                          ? "c-edu: DMA through the queue-made mapping copied the bytes\n"
                          : "c-edu: DMA through the queue-made mapping FAILED\n");
    if (iommu_queue_post_unmap(&q, MY_DEVICE, iova, &tag) != 0) {
        microkit_dbg_puts("c-edu: its mapping queue is full\n");
        return;
    }
    iommu_queue_notify(&q);
    if (!next_done(&q, &d) || d.tag != tag) {
        microkit_dbg_puts("c-edu: no completion for its queued UNMAP\n");
        return;
    }
    say("UNMAP through its mapping queue (notified), completed", d.err);
    /* The page is the driver's again: the device's write at the old IOVA must not land. */
    microkit_dbg_puts(edu_write_misses(edu_bar, iova + 0x400, page + 0x400, 0x44)
                          ? "c-edu: after the queued UNMAP's completion the old IOVA is dead\n"
                          : "c-edu: after the queued UNMAP's completion the old IOVA still LANDS, or the device never finished the write\n");
}

/* Just before it crashes: a MAP through its queue whose completion it takes (the mapping
 * is live, DMA through it copies the bytes), a second served whose completion it leaves
 * in the ring (live too), and a third posted and never served. What its restart must
 * show: none of the three reaches anything, and the third is never served. */
static void leave_its_queue_in_use(volatile uint8_t *page)
{
    struct iommu_queue q;
    if (!start_queue(&q, "its mapping queue before its crash")) {
        return;
    }
    if (queued_map(&q, LEFT_TAKEN, "before its crash, MAP at 0x100080000 through its mapping queue, completed") !=
        LEFT_TAKEN) {
        return;
    }
    microkit_dbg_puts(edu_round_trip(edu_bar, page, LEFT_TAKEN, 0x71)
                          ? "c-edu: before its crash, DMA through its queue-made mapping at 0x100080000 copied the bytes\n"
                          : "c-edu: before its crash, DMA through its queue-made mapping at 0x100080000 FAILED\n");
    uint64_t tag = 0, taken = 0;
    if (iommu_queue_post_map(&q, MY_BUFFERS, MY_DEVICE, 0, 0x1000, LEFT_UNTAKEN, IOMMU_RIGHTS_READ_WRITE, &tag) != 0 ||
        iommu_queue_serve(&q, &taken) != 0 || taken != 1) {
        microkit_dbg_puts("c-edu: before its crash, its second queued MAP was not served\n");
        return;
    }
    /* Its completion stays in the ring: the DMA is what shows the mapping is there. */
    microkit_dbg_puts(edu_round_trip(edu_bar, page, LEFT_UNTAKEN, 0x72)
                          ? "c-edu: before its crash, a queued MAP at 0x100090000 was served (its completion left "
                            "untaken): DMA through it copied the bytes\n"
                          : "c-edu: before its crash, DMA through the queued MAP at 0x100090000 FAILED\n");
    if (iommu_queue_post_map(&q, MY_BUFFERS, MY_DEVICE, 0, 0x1000, LEFT_POSTED, IOMMU_RIGHTS_READ_WRITE, &tag) != 0) {
        microkit_dbg_puts("c-edu: its mapping queue is full\n");
        return;
    }
    struct queue_state st = queue_state();
    if (st.posted - st.taken == 1 && st.done - st.read == 1) {
        microkit_dbg_puts("c-edu: crashes with its queue in use: a MAP at 0x1000a0000 posted and not served, a "
                          "completion not taken, two queue-made mappings live\n");
    }
}

/* Does a write by its device at `iova` (+ PROBE) miss its page? Said as
 * "c-edu: after its restart, <what> <iova> is dead", or "... still LANDS". */
static void dead_after_restart(const char *what, uint64_t iova, volatile uint8_t *page, uint8_t byte)
{
    /* A short write (edu_probe_misses): with the first run's faults, three writes of
     * EDU_LEN would pass the description's storm limit and quarantine the device. */
    int dead = edu_probe_misses(edu_bar, iova + PROBE, page + PROBE, byte);
    microkit_dbg_puts("c-edu: after its restart, ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(" ");
    put_hex(iova);
    microkit_dbg_puts(dead ? " is dead\n" : " still LANDS, or the device never finished the write\n");
}

/* After the restart, its queue again: what the dead run left in it is gone (the IOMMU PD
 * started it over before restarting this PD, so a wake-up before this run's
 * iommu_queue_init serves nothing), none of the dead run's queue-made mappings reaches
 * anything, and the queue maps and unmaps again from iommu_queue_init. */
static void queue_after_restart(volatile uint8_t *page)
{
    struct queue_state st = queue_state();
    if (st.posted == st.taken && st.done == st.read) {
        microkit_dbg_puts("c-edu: after its restart, its queue holds nothing of its first run: as many requests "
                          "taken as posted, completions read as posted\n");
    } else {
        microkit_dbg_puts("c-edu: after its restart, its queue STILL HOLDS its first run's: posted ");
        put_hex(st.posted);
        microkit_dbg_puts(", taken ");
        put_hex(st.taken);
        microkit_dbg_puts(", completions ");
        put_hex(st.done);
        microkit_dbg_puts(", read ");
        put_hex(st.read);
        microkit_dbg_puts("\n");
    }
    /* A wake-up before iommu_queue_init, as one left pending at the crash would come:
     * served against the indices as the IOMMU PD left them. */
    uint64_t err = iommu_call(IOMMU, IOMMU_QUEUE_SERVE, 0);
    say("after its restart, the doorbell before it starts its queue again", err);
    if (err == 0) {
        microkit_dbg_puts("c-edu: after its restart, that wake-up took ");
        put_hex(microkit_mr_get(0));
        microkit_dbg_puts(" entries\n");
    }
    /* The device's buffer holds 0x5a (after_restart's round trip): other bytes to watch. */
    dead_after_restart("its first run's queue-made mapping's IOVA", LEFT_TAKEN, page, 0x61);
    dead_after_restart("the IOVA its first run's served queued MAP (completion untaken) mapped", LEFT_UNTAKEN, page,
                       0x62);
    dead_after_restart("the IOVA of the queued MAP its first run posted and never had served", LEFT_POSTED, page,
                       0x63);

    struct iommu_queue q;
    if (!start_queue(&q, "after its restart, its mapping queue")) {
        return;
    }
    uint64_t iova = queued_map(&q, IOMMU_IOVA_ANY, "after its restart, MAP through its mapping queue, completed");
    if (iova == 0) {
        return;
    }
    microkit_dbg_puts(edu_round_trip(edu_bar, page, iova, 0x6d)
                          ? "c-edu: after its restart, DMA through its new queue-made mapping copied the bytes\n"
                          : "c-edu: after its restart, DMA through its new queue-made mapping FAILED\n");
    /* The strict UNMAP a driver makes before it takes its page back: by the queue (the
     * doorbell), or else by the call, or else its device stopped; said as which. */
    static const char *const how[] = {"confirmed by the queue", "confirmed by the call", "its device STOPPED",
                                      "NOT CONFIRMED, its device NOT STOPPED"};
    uint64_t last = 0;
    enum iommu_unmap_strict_result r = iommu_unmap_strict(&q, IOMMU, MY_DEVICE, iova, NULL, NULL, &last);
    microkit_dbg_puts("c-edu: after its restart, UNMAP through its mapping queue (iommu_unmap_strict): ");
    microkit_dbg_puts(how[r]);
    microkit_dbg_puts(", last error ");
    put_hex(last);
    microkit_dbg_puts("\n");
}

/* How many times init has run. Not in the image's zeroed data again on a restart: the IOMMU
 * PD restarts this PD from its entry point after it crashes, and its memory stays as the
 * crash left it. */
static unsigned runs;

/* After the restart: map again, and the device's DMA through the new mapping copies the
 * bytes (checked in memory); then the mapping goes; then its queue again; and in the end
 * it holds no mapping at all. */
static void after_restart(void)
{
    microkit_dbg_puts("c-edu: restarted by the IOMMU PD after its crash (run 2)\n");
    /* Its first MAP, before its device is turned on: had its function been away at the
     * teardown, the IOMMU PD left the device stopped for this run, and the RESUME
     * iommu_map_at_start sends then stops and resets the function (Bus Master off) before
     * the device translates again; a Command write before it would be undone. */
    volatile uint8_t *page = (volatile uint8_t *)buffers;
    uint64_t iova = 0;
    uint64_t err =
        iommu_map_at_start(IOMMU, MY_BUFFERS, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    say("after its restart, MAP of its buffer's first page", err);
    if (err) {
        return;
    }
    /* The IOMMU PD stopped its function at the teardown (Bus Master off, Memory Space kept on
     * where it placed the BARs; the edu has no FLR): turned on again, as a driver probing its
     * device does. */
    uint32_t command = 0xffff;
    err = iommu_config_read(IOMMU, MY_DEVICE, 0x04, 2, &command);
    say("after its restart, CONFIG_READ of Command", err);
    microkit_dbg_puts("c-edu: after its restart, its device's Command reads ");
    put_hex(command);
    microkit_dbg_puts("\n");
    err = iommu_config_write(IOMMU, MY_DEVICE, 0x04, 2, COMMAND_MEMORY_MASTER, 0);
    say("after its restart, CONFIG_WRITE turning its device on again", err);
    microkit_dbg_puts(edu_round_trip(edu_bar, page, iova, 0x5a)
                          ? "c-edu: after its restart, DMA through the new mapping copied the bytes\n"
                          : "c-edu: after its restart, DMA through the new mapping FAILED\n");
    say("after its restart, UNMAP", iommu_unmap(IOMMU, MY_DEVICE, &iova, 1));
    queue_after_restart(page);
    uint64_t values[IOMMU_QUERY_VALUES];
    if (iommu_query(IOMMU, values) == 0) {
        microkit_dbg_puts("c-edu: after its restart, QUERY: mappings ");
        put_hex(values[IOMMU_QUERY_MAPPINGS]);
        microkit_dbg_puts("\n");
    }
    /* This run knows nothing of what the first lent, and may put other data in that page:
     * the borrower looks whether its device still reaches it. */
    microkit_dbg_puts("c-edu: after its restart, tells the edu driver it ran again\n");
    microkit_ppcall(BORROWER, microkit_msginfo_new(BORROWER_LENDER_RESTARTED, 0));
}

/* Its page lent to the edu driver again, read-write for its device, and left lent: the
 * edu driver maps it and its device writes into it before the call returns (it runs
 * above this PD). Taken back by nobody: by the IOMMU PD's teardown when this PD crashes. */
static void lend_through_the_crash(void)
{
    uint32_t grant = 0, theirs = 0;
    uint64_t err = iommu_grant(IOMMU, MY_BUFFERS, EDU_DRIVER, 0, 0x1000, IOMMU_RIGHTS_READ_WRITE, EDU_DRIVER_DEVICES,
                               &grant, &theirs);
    say("GRANT of its page to the (Rust) edu driver, read-write, left lent through its crash", err);
    if (err == 0) {
        microkit_mr_set(0, theirs);
        microkit_ppcall(BORROWER, microkit_msginfo_new(BORROWER_LENT, 1));
    }
}

void init(void)
{
    runs++;
    if (runs > 1) {
        after_restart();
        return;
    }
    /* Its function's configuration space is the IOMMU PD's: read and written through it,
     * no ECAM mapped here. */
    uint32_t bar0 = 0;
    uint64_t err = iommu_config_read(IOMMU, MY_DEVICE, 0x10, 4, &bar0);
    if (err) {
        say("CONFIG_READ of BAR0", err);
        return;
    }
    if ((bar0 & ~0xfu) != BAR0) {
        microkit_dbg_puts("c-edu: BAR0 not where the description maps it: ");
        put_hex(bar0);
        microkit_dbg_puts("\n");
        return;
    }
    err = iommu_config_write(IOMMU, MY_DEVICE, 0x04, 2, COMMAND_MEMORY_MASTER, 0);
    say("CONFIG_WRITE turning its device on (BAR0 read back at 0x10300000)", err);
    if (err) {
        return;
    }
    volatile uint8_t *page = (volatile uint8_t *)buffers;

    uint64_t iova = 0;
    err = iommu_map(IOMMU, MY_BUFFERS, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    say("MAP of its buffer's first page", err);
    if (err) {
        return;
    }
    /* The device reads the first 256 bytes and writes them back 2 KiB further on. */
    microkit_dbg_puts(edu_round_trip(edu_bar, page, iova, 0xc5) ? "c-edu: DMA through the mapping copied the bytes\n"
                                                                : "c-edu: DMA through the mapping FAILED\n");
    /* The second page of its buffer is not mapped. */
    microkit_dbg_puts(edu_write_misses(edu_bar, iova + 0x1000, page + 0x1000, 0x11)
                          ? "c-edu: DMA past the mapping is blocked\n"
                          : "c-edu: DMA past the mapping LANDED, or the device never finished it\n");
    err = iommu_unmap(IOMMU, MY_DEVICE, &iova, 1);
    say("UNMAP", err);
    microkit_dbg_puts(edu_write_misses(edu_bar, iova + 0x800, page + 0x800, 0x22)
                          ? "c-edu: after UNMAP the old IOVA is dead\n"
                          : "c-edu: after UNMAP the old IOVA still LANDS, or the device never finished the write\n");
    through_the_queue(page);

    uint32_t grant = 0, theirs = 0;
    err = iommu_grant(IOMMU, MY_BUFFERS, EDU_DRIVER, 0, 0x1000, IOMMU_RIGHTS_READ, EDU_DRIVER_DEVICES, &grant, &theirs);
    say("GRANT of a page to the (Rust) edu driver", err);
    if (err == 0) {
        say("REVOKE of it", iommu_revoke(IOMMU, grant));
    }
    uint64_t q[IOMMU_QUERY_VALUES];
    if (iommu_query(IOMMU, q) == 0) {
        microkit_dbg_puts("c-edu: QUERY: mappings ");
        put_hex(q[IOMMU_QUERY_MAPPINGS]);
        microkit_dbg_puts(", grants ");
        put_hex(q[IOMMU_QUERY_GRANTS]);
        microkit_dbg_puts("\n");
    }
    /* Last, it crashes with its page mapped twice through its queue (its whole mapping
     * quota) and its queue in use, as a driver with a bug might: the IOMMU PD takes its
     * DMA away and starts its queue over, then restarts it. */
    lend_through_the_crash();
    leave_its_queue_in_use(page);
    /* A trap (brk), as a failed assertion or a Rust PD's panic ends: a debug exception on
     * Microkit's debug kernels, which once panicked the IOMMU PD as it decoded the fault. */
    microkit_dbg_puts("c-edu: crashes (a trap)\n");
    __builtin_trap();
}

void notified(microkit_channel ch)
{
    if (ch != IOMMU) {
        return;
    }
    print_faults("c-edu", fault_ring, IOMMU, &next_fault);
}

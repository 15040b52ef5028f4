/*
 * An edu driver protection domain in C, on libmicrokit and iommu_client.h, with no Rust
 * in it: it maps its buffer through the IOMMU service, has its device copy bytes through
 * the mapping, sees DMA past the mapping and after UNMAP blocked, does the same through its
 * mapping queue, reads the fault records the IOMMU PD routes to it, and lends a page to the
 * (Rust) edu driver and takes it back.
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

/* MAP through the mapping queue (the doorbell call), DMA through that mapping, UNMAP
 * through the queue (a notification), and DMA at the old IOVA once the UNMAP's completion
 * says it is done: blocked (the IOMMU PD reports the fault). */
static void through_the_queue(volatile uint8_t *page)
{
    struct iommu_queue q;
    uint64_t err = iommu_queue_init(&q, iommu_queue, iommu_queue_size, C_EDU_DRIVER_QUEUE_ENTRIES, IOMMU);
    if (err) {
        say("its mapping queue", err);
        return;
    }
    uint64_t tag = 0, taken = 0;
    struct iommu_queue_done d = {0, 0, 0};
    if (iommu_queue_post_map(&q, MY_BUFFERS, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &tag) != 0) {
        microkit_dbg_puts("c-edu: its mapping queue is full\n");
        return;
    }
    err = iommu_queue_serve(&q, &taken);
    if (err == 0 && (!next_done(&q, &d) || d.tag != tag)) {
        microkit_dbg_puts("c-edu: no completion for its queued MAP\n");
        return;
    }
    say(err ? "the doorbell call" : "MAP through its mapping queue (the doorbell call), completed", err ? err : d.err);
    if (err || d.err) {
        return;
    }
    uint64_t iova = d.value;
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
                          : "c-edu: after the queued UNMAP's completion the old IOVA still LANDS\n");
}

/* How many times init has run. Not in the image's zeroed data again on a restart: the IOMMU
 * PD restarts this PD from its entry point after it crashes, and its memory stays as the
 * crash left it. */
static unsigned runs;

/* After the restart: map again, and the device's DMA through the new mapping copies the
 * bytes (checked in memory); then the mapping goes. */
static void after_restart(void)
{
    microkit_dbg_puts("c-edu: restarted by the IOMMU PD after its crash (run 2)\n");
    /* The IOMMU PD stopped its function at the teardown (Bus Master and Memory Space off;
     * the edu has no FLR): turned on again, as a driver probing its device does. */
    uint32_t command = 0xffff;
    uint64_t err = iommu_config_read(IOMMU, MY_DEVICE, 0x04, 2, &command);
    say("after its restart, CONFIG_READ of Command", err);
    microkit_dbg_puts("c-edu: after its restart, its device's Command reads ");
    put_hex(command);
    microkit_dbg_puts("\n");
    err = iommu_config_write(IOMMU, MY_DEVICE, 0x04, 2, COMMAND_MEMORY_MASTER, 0);
    say("after its restart, CONFIG_WRITE turning its device on again", err);
    volatile uint8_t *page = (volatile uint8_t *)buffers;
    uint64_t iova = 0;
    err = iommu_map(IOMMU, MY_BUFFERS, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    say("after its restart, MAP of its buffer's first page", err);
    if (err) {
        return;
    }
    microkit_dbg_puts(edu_round_trip(edu_bar, page, iova, 0x5a)
                          ? "c-edu: after its restart, DMA through the new mapping copied the bytes\n"
                          : "c-edu: after its restart, DMA through the new mapping FAILED\n");
    say("after its restart, UNMAP", iommu_unmap(IOMMU, MY_DEVICE, &iova, 1));
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
                          : "c-edu: DMA past the mapping LANDED\n");
    err = iommu_unmap(IOMMU, MY_DEVICE, &iova, 1);
    say("UNMAP", err);
    microkit_dbg_puts(edu_write_misses(edu_bar, iova + 0x800, page + 0x800, 0x22)
                          ? "c-edu: after UNMAP the old IOVA is dead\n"
                          : "c-edu: after UNMAP the old IOVA still LANDS\n");
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
    /* Last, it crashes with a page mapped, as a driver with a bug might: the IOMMU PD takes
     * its DMA away, then restarts it. */
    uint64_t held = 0;
    err = iommu_map(IOMMU, MY_BUFFERS, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &held);
    say("MAP of its first page again before it crashes", err);
    microkit_dbg_puts("c-edu: crashes (a store to an address it has no mapping for)\n");
    *(volatile uint64_t *)0xdead1000 = 0;
}

void notified(microkit_channel ch)
{
    if (ch != IOMMU) {
        return;
    }
    print_faults("c-edu", fault_ring, IOMMU, &next_fault);
}

/*
 * An edu driver for images/pci-topology.xml, where each edu sits behind a different kind
 * of bridge (a root port, a switch, a PCIe-to-PCI bridge) and one described edu is not
 * there at all. One program, run by every driver PD of that image; each finds its own
 * device by asking the IOMMU PD (the one device id it does not answer BAD_DEVICE for:
 * its own, present or missing), checks that the IOMMU PD placed its BAR0 at the region the
 * description maps here (its physical address, `bar_paddr`, patched in by the Microkit
 * tool), turns the device on through CONFIG_WRITE, has it copy bytes through a mapping
 * of its buffer, and has it write past the mapping, which the SMMU blocks and the IOMMU
 * PD reports to this PD with the StreamID `iommu-sdf` derived for the device. It also asks
 * for its edu's INTx and raises it: where its PD holds the line (an <irq> at INTX) the
 * interrupt must reach it; elsewhere the IOMMU PD keeps Interrupt Disable set, and where
 * a channel at PEER leads to the line's holder it tells that PD once its edu has
 * asserted, so the holder can show it took nothing from it.
 *
 * None of this works unless the IOMMU PD numbered the buses as the description says:
 * the device's configuration space is reached through the bridges' bus numbers, its BAR
 * through their windows, and its DMA carries the requester ID (and so the StreamID) that
 * the bus numbers make.
 */
#include <stdint.h>

#include <microkit.h>

#include "edu.h"
#include "iommu_client.h"
#include "pd_print.h"

/* Its channel to the IOMMU PD (the description's convention: id 0 at a client), and its
 * one capability (handle 0: the first of its own in the description). */
#define IOMMU 0
#define MY_BUFFER 0
/* Where the description gives it one: its edu's INTx line (an <irq>), and a channel to
 * the driver whose edu shares that line (images/pci-topology.xml). */
#define INTX 1
#define PEER 2
/* Device ids tried when looking for its own: more than any description here has. */
#define MAX_DEVICES 64
#define COMMAND_MEMORY_MASTER 0x6u
#define COMMAND_INTX_DISABLE 0x400u
/* Status: Interrupt Status, set while the function asserts INTx (whether or not
 * Interrupt Disable lets it reach the line). */
#define STATUS_INTERRUPT 0x8u
/* edu's interrupt registers (QEMU's docs/specs/edu.rst): raise, acknowledge. */
#define EDU_INTR_STATUS 0x24
#define EDU_INTR_RAISE 0x60
#define EDU_INTR_ACK 0x64

/* Set by the Microkit tool; in .data so they have bytes to patch. */
uintptr_t edu_bar __attribute__((section(".data")));
uintptr_t bar_paddr __attribute__((section(".data")));
uintptr_t buffer __attribute__((section(".data")));
uintptr_t fault_ring __attribute__((section(".data")));

static uint64_t next_fault;
/* Interrupts taken on its INTx line. */
static unsigned intx_taken;

static int holds_line(void)
{
    return (microkit_irqs & (1ull << INTX)) != 0;
}

/* How many times init has run: the IOMMU PD restarts this PD from its entry after its
 * crash, its memory as the crash left it (so not in the zeroed data it started with). */
static unsigned runs;

static void line(const char *what)
{
    microkit_dbg_puts(microkit_name);
    microkit_dbg_puts(runs > 1 ? ": after its restart, " : ": ");
    microkit_dbg_puts(what);
}

static void say(const char *what, uint64_t err)
{
    /* put_result puts ": " before `what`. */
    microkit_dbg_puts(runs > 1 ? microkit_name : "");
    put_result(runs > 1 ? ": after its restart" : microkit_name, what, err);
}

/* The driver that crashes once its first run is over (rp_driver, the one whose edu sits
 * behind the root port): the image's IOMMU PD (feature inject-function-away) sees its
 * function away during the teardown, so it can neither stop nor reset it, and leaves its
 * device stopped for the restarted driver, whose first MAP (iommu_map_at_start) RESUMEs it. */
static int crashes(void)
{
    static const char name[] = "rp_driver";
    for (unsigned i = 0; i < sizeof name; i++) {
        if (microkit_name[i] != name[i]) {
            return 0;
        }
    }
    return runs == 1;
}

void init(void)
{
    runs++;
    uint32_t id = 0;
    uint64_t err = IOMMU_ERR_BAD_DEVICE;
    uint32_t dev = 0;
    for (; dev < MAX_DEVICES; dev++) {
        err = iommu_config_read(IOMMU, dev, 0x00, 4, &id);
        if (err != IOMMU_ERR_BAD_DEVICE) {
            break;
        }
    }
    if (dev == MAX_DEVICES) {
        line("the IOMMU PD knows no device of mine\n");
        return;
    }
    /* Every device id before its own is another driver's: the IOMMU PD refused to let
     * this PD read their configuration space. */
    line("device ");
    put_hex(dev);
    microkit_dbg_puts(", the ");
    put_hex(dev);
    microkit_dbg_puts(" before it refused (BAD_DEVICE)\n");
    if (err) {
        /* A missing device: the IOMMU PD says so, and named it at boot. */
        say("CONFIG_READ of its ID", err);
        return;
    }
    uint32_t bar0 = 0;
    err = iommu_config_read(IOMMU, dev, 0x10, 4, &bar0);
    if (err || (bar0 & ~0xfu) != bar_paddr) {
        line("BAR0 not where the description maps it: ");
        put_hex(err ? err : bar0);
        microkit_dbg_puts("\n");
        return;
    }
    /* Its first MAP, before its device is turned on: where the IOMMU PD left the device
     * stopped for this run (its function away at its last driver's teardown), the RESUME
     * that iommu_map_at_start sends then stops and resets the function first (Bus Master
     * off), which would undo a Command write made before it. */
    volatile uint8_t *page = (volatile uint8_t *)buffer;
    uint64_t iova = 0;
    err = iommu_map_at_start(IOMMU, MY_BUFFER, dev, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    say("MAP of its buffer's first page (iommu_map_at_start)", err);
    if (err) {
        return;
    }
    /* Interrupt Disable clear: it asks for its INTx too. */
    uint32_t command = 0;
    err = iommu_config_write(IOMMU, dev, 0x04, 2, COMMAND_MEMORY_MASTER, &command);
    say("CONFIG_WRITE turning its device on", err);
    if (err) {
        return;
    }
    line("edu ");
    put_hex(id);
    microkit_dbg_puts(", BAR0 at ");
    put_hex(bar0 & ~0xfu);
    microkit_dbg_puts(", its ident register reads ");
    put_hex(*(volatile uint32_t *)edu_bar);
    microkit_dbg_puts("\n");
    /* The IOMMU PD lets Interrupt Disable clear only where this PD holds its edu's
     * line (an <irq> at INTX); elsewhere it keeps it set, and the edu asserts all the
     * same (Interrupt Status) but the bit keeps the line, which QEMU virt's swizzle may
     * share with another PD's edu, quiet. */
    int enabled = !(command & COMMAND_INTX_DISABLE);
    line("Command reads ");
    put_hex(command);
    microkit_dbg_puts(holds_line() ? (enabled ? ": INTx enabled, its PD holds its line\n"
                                              : ": INTx KEPT DISABLED on its PD's own line\n")
                                   : (enabled ? ": INTX ENABLED on a line its PD does not hold\n"
                                              : ": INTx kept disabled, its PD does not hold its line\n"));
    *(volatile uint32_t *)(edu_bar + EDU_INTR_RAISE) = 1;
    uint32_t status = 0;
    err = iommu_config_read(IOMMU, dev, 0x06, 2, &status);
    line("its edu raised an interrupt: Status ");
    put_hex(err ? err : status);
    microkit_dbg_puts(err || !(status & STATUS_INTERRUPT) ? ": NOT ASSERTED\n"
                      : !enabled                          ? ": asserted, held off the line\n"
                      : holds_line()                      ? ": asserted, on its PD's line\n"
                                                          : ": asserted, ON A LINE ITS PD DOES NOT HOLD\n");
    if (!(enabled && holds_line())) {
        *(volatile uint32_t *)(edu_bar + EDU_INTR_ACK) = 1;
    }
    /* Otherwise it stays asserted until its interrupt arrives (notified). The driver
     * whose edu shares the line tells the holder once its own edu has asserted and been
     * quieted, so the holder can say what that did to its line. */
    if (microkit_notifications & (1ull << PEER) && !holds_line()) {
        microkit_notify(PEER);
    }

    line(edu_round_trip(edu_bar, page, iova, 0x5a) ? "DMA through the mapping copied the bytes\n"
                                                   : "DMA through the mapping FAILED\n");
    /* The second page of its buffer is not mapped: the SMMU blocks the write, and the
     * IOMMU PD tells this PD (notified, below). */
    line(edu_write_misses(edu_bar, iova + 0x1000, page + 0x1000, 0x11) ? "DMA past the mapping is blocked\n"
                                                                       : "DMA past the mapping LANDED, or the device never finished it\n");
}

void notified(microkit_channel ch)
{
    if (ch == IOMMU) {
        print_faults(microkit_name, fault_ring, IOMMU, &next_fault);
        if (crashes()) {
            line("crashes now, its device mapped and mastering\n");
            __builtin_trap();
        }
    } else if (ch == INTX) {
        intx_taken++;
        uint32_t mine = *(volatile uint32_t *)(edu_bar + EDU_INTR_STATUS);
        if (!mine) {
            /* Not its edu's: left unacknowledged, so a line another device holds
             * asserted cannot storm this PD. */
            line("an INTx with its edu quiet: ANOTHER DEVICE ON ITS LINE\n");
            return;
        }
        line("its edu's INTx reached it: interrupt ");
        put_hex(intx_taken);
        microkit_dbg_puts(" on its line\n");
        *(volatile uint32_t *)(edu_bar + EDU_INTR_ACK) = mine;
        microkit_irq_ack(INTX);
    } else if (ch == PEER) {
        line("the other edu on its line asserted and was quieted: interrupts on its line ");
        put_hex(intx_taken);
        microkit_dbg_puts(intx_taken == 1 ? ", its own edu's one alone\n" : ", NOT ITS OWN EDU'S ONE ALONE\n");
    }
}

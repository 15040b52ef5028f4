/*
 * A PD written the way Microkit's x86_64_iommu_dma_test is: it never calls the IOMMU
 * service for DMA. Its description gives its edu device one page at IOVA 0x100000
 * (`<io_address_space>` with `<iomap>`, Microkit's own vocabulary), and on Arm the IOMMU PD
 * makes exactly that mapping: the device reaches the page there, and nothing else, not
 * even the same page by its physical address.
 *
 * What it does call the IOMMU PD for is its device's configuration space: the IOMMU PD
 * owns PCI configuration space (no driver maps ECAM), placed the device's BAR0 before
 * this PD ran, and turns its Memory Space and Bus Master bits on when asked.
 */
#include <stdint.h>

#include <microkit.h>

#include "edu.h"
#include "iommu_client.h"
#include "pd_print.h"

/* Its channel to the IOMMU PD and its device (the one device the description names). */
#define IOMMU 0
#define MY_DEVICE 0

#define IOVA 0x100000u
/* Where the IOMMU PD puts edu 00:02.0's BAR0 (the first MiB of the PCI memory window),
 * which the description maps at edu_mmio_window. */
#define BAR0 0x10000000u
/* Command: memory space and bus master (the IOMMU PD left both off). */
#define COMMAND_MEMORY_MASTER 0x6u

uintptr_t edu_mmio_window_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_paddr __attribute__((section(".data")));

static void say(const char *what, uint64_t err)
{
    microkit_dbg_puts("iomap-test: ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(": error ");
    put_hex(err);
    microkit_dbg_puts("\n");
}

void init(void)
{
    /* Its BAR0 must be where the description maps it, or the device's registers are not
     * what this PD would be driving. */
    uint32_t bar0 = 0;
    uint64_t err = iommu_config_read(IOMMU, MY_DEVICE, 0x10, 4, &bar0);
    if (err || (bar0 & ~0xfu) != BAR0) {
        say("BAR0 not where the description maps it", err ? err : bar0);
        return;
    }
    err = iommu_config_write(IOMMU, MY_DEVICE, 0x04, 2, COMMAND_MEMORY_MASTER, 0);
    if (err) {
        say("CONFIG_WRITE turning its device on", err);
        return;
    }
    volatile uint8_t *buf = (volatile uint8_t *)dma_buffer_vaddr;

    microkit_dbg_puts(edu_round_trip(edu_mmio_window_vaddr, buf, IOVA, 0x5a)
                          ? "iomap-test: DMA at the iomap's IOVA reaches the page\n"
                          : "iomap-test: DMA at the iomap's IOVA FAILED\n");
    microkit_dbg_puts(edu_write_misses(edu_mmio_window_vaddr, dma_buffer_paddr + 0x800, buf + 0x800, 0)
                          ? "iomap-test: DMA at the page's physical address is blocked\n"
                          : "iomap-test: DMA at the page's physical address LANDED\n");
}

void notified(microkit_channel ch)
{
    (void)ch;
}

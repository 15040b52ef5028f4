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
#include "edu_on.h"
#include "iommu_client.h"
#include "pd_print.h"

/* Its channel to the IOMMU PD and its device (the one device the description names). */
#define IOMMU 0
#define MY_DEVICE 0

#define IOVA 0x100000u

uintptr_t edu_mmio_window_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_paddr __attribute__((section(".data")));

void init(void)
{
    /* Its BAR0 (which the description maps at edu_mmio_window) checked, then on. */
    if (!edu_switch_on("iomap-test", IOMMU, MY_DEVICE)) {
        return;
    }
    volatile uint8_t *buf = (volatile uint8_t *)dma_buffer_vaddr;

    microkit_dbg_puts(edu_round_trip(edu_mmio_window_vaddr, buf, IOVA, 0x5a)
                          ? "iomap-test: DMA at the iomap's IOVA reaches the page\n"
                          : "iomap-test: DMA at the iomap's IOVA FAILED\n");
    microkit_dbg_puts(edu_write_misses(edu_mmio_window_vaddr, dma_buffer_paddr + 0x800, buf + 0x800, 0)
                          ? "iomap-test: DMA at the page's physical address is blocked\n"
                          : "iomap-test: DMA at the page's physical address LANDED, or the device never finished it\n");
}

void notified(microkit_channel ch)
{
    (void)ch;
}

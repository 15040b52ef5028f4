/*
 * A PD written the way Microkit's x86_64_iommu_dma_test is: it knows nothing of the
 * IOMMU service. Its description gives its edu device one page at IOVA 0x100000
 * (`<io_address_space>` with `<iomap>`, Microkit's own vocabulary), and on Arm the IOMMU PD
 * makes exactly that mapping: the device reaches the page there, and nothing else, not
 * even the same page by its physical address.
 */
#include <stdint.h>

#include <microkit.h>

#include "edu.h"

#define IOVA 0x100000u
#define ECAM_FUNCTION (2u << 15) /* edu 00:02.0 */
#define BAR0 0x10000000u

uintptr_t pci_ecam_vaddr __attribute__((section(".data")));
uintptr_t edu_mmio_window_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_paddr __attribute__((section(".data")));

void init(void)
{
    volatile uint32_t *cfg = (volatile uint32_t *)(pci_ecam_vaddr + ECAM_FUNCTION);
    cfg[0x10 / 4] = BAR0;
    cfg[0x04 / 4] |= 0x6;
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

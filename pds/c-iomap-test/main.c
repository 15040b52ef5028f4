/*
 * A PD written the way Microkit's x86_64_iommu_dma_test is: it knows nothing of the
 * IOMMU service. Its description gives its edu device one page at IOVA 0x100000
 * (`<io_address_space>` with `<iomap>`, Microkit's own vocabulary), and on Arm the IOMMU PD
 * makes exactly that mapping: the device reaches the page there, and nothing else, not
 * even the same page by its physical address.
 */
#include <stdint.h>

#include <microkit.h>

#define IOVA 0x100000u
#define ECAM_FUNCTION (2u << 15) /* edu 00:02.0 */
#define BAR0 0x10000000u
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_BUFFER 0x40000u
#define LEN 256

uintptr_t pci_ecam_vaddr __attribute__((section(".data")));
uintptr_t edu_mmio_window_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_paddr __attribute__((section(".data")));

static volatile uint64_t *reg(unsigned offset)
{
    return (volatile uint64_t *)(edu_mmio_window_vaddr + offset);
}

static void dma(uint64_t src, uint64_t dst, unsigned to_ram)
{
    *reg(EDU_DMA_SRC) = src;
    *reg(EDU_DMA_DST) = dst;
    *reg(EDU_DMA_COUNT) = LEN;
    *reg(EDU_DMA_CMD) = 1u | (to_ram ? 2u : 0u);
    for (unsigned long i = 0; i < 200000000ul && (*reg(EDU_DMA_CMD) & 1u); i++) {
    }
}

static int holds(volatile uint8_t *p, uint8_t byte)
{
    for (unsigned i = 0; i < LEN; i++) {
        if (p[i] != byte) {
            return 0;
        }
    }
    return 1;
}

static void fill(volatile uint8_t *p, uint8_t byte)
{
    for (unsigned i = 0; i < LEN; i++) {
        p[i] = byte;
    }
}

void init(void)
{
    volatile uint32_t *cfg = (volatile uint32_t *)(pci_ecam_vaddr + ECAM_FUNCTION);
    cfg[0x10 / 4] = BAR0;
    cfg[0x04 / 4] |= 0x6;
    volatile uint8_t *buf = (volatile uint8_t *)dma_buffer_vaddr;

    fill(buf, 0x5a);
    fill(buf + 0x800, 0);
    dma(IOVA, EDU_BUFFER, 0);
    dma(EDU_BUFFER, IOVA + 0x800, 1);
    microkit_dbg_puts(holds(buf + 0x800, 0x5a) ? "iomap-test: DMA at the iomap's IOVA reaches the page\n"
                                              : "iomap-test: DMA at the iomap's IOVA FAILED\n");
    fill(buf + 0x800, 0);
    dma(EDU_BUFFER, dma_buffer_paddr + 0x800, 1);
    microkit_dbg_puts(holds(buf + 0x800, 0) ? "iomap-test: DMA at the page's physical address is blocked\n"
                                            : "iomap-test: DMA at the page's physical address LANDED\n");
}

void notified(microkit_channel ch)
{
    (void)ch;
}

/*
 * An edu driver protection domain in C, on libmicrokit and iommu_client.h, with no Rust
 * in it: it maps its buffer through the IOMMU service, has its device copy bytes through
 * the mapping, sees DMA past the mapping and after UNMAP blocked, reads the fault records
 * the IOMMU PD routes to it, and lends a page to the (Rust) edu driver and takes it back.
 */
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"

/* Its channel to the IOMMU PD, its device and the client it may lend to, as
 * system.xml gives them (the device and client indices are their places in the
 * description). */
#define IOMMU 0
#define MY_DEVICE 3
#define EDU_DRIVER 0
#define EDU_DRIVER_DEVICES (1u << 0)

/* Where its edu's BAR0 goes: the fourth MiB of the PCI memory window. */
#define BAR0 0x10300000u
/* edu 00:05.0 in bus 0's configuration space. */
#define ECAM_FUNCTION (5u << 15)

#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_BUFFER 0x40000u
#define DMA_START 1u
#define DMA_TO_RAM 2u
#define LEN 256

/* Set by the Microkit tool (setvar_vaddr); in .data so it has bytes to patch. */
uintptr_t ecam __attribute__((section(".data")));
uintptr_t edu_bar __attribute__((section(".data")));
uintptr_t buffers __attribute__((section(".data")));
uintptr_t fault_ring __attribute__((section(".data")));

static uint64_t next_fault;

static void put_hex(uint64_t v)
{
    char s[19] = "0x";
    int n = 2;
    int started = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned d = (v >> shift) & 0xf;
        if (d || started || shift == 0) {
            s[n++] = "0123456789abcdef"[d];
            started = 1;
        }
    }
    s[n] = 0;
    microkit_dbg_puts(s);
}

static void say(const char *what, uint64_t err)
{
    microkit_dbg_puts("c-edu: ");
    microkit_dbg_puts(what);
    if (err == 0) {
        microkit_dbg_puts(": ok\n");
    } else {
        microkit_dbg_puts(": error ");
        put_hex(err);
        microkit_dbg_puts("\n");
    }
}

static volatile uint64_t *reg(unsigned offset)
{
    return (volatile uint64_t *)(edu_bar + offset);
}

/* Run one DMA and wait (bounded) for the engine. */
static void dma(uint64_t src, uint64_t dst, unsigned to_ram)
{
    *reg(EDU_DMA_SRC) = src;
    *reg(EDU_DMA_DST) = dst;
    *reg(EDU_DMA_COUNT) = LEN;
    *reg(EDU_DMA_CMD) = DMA_START | (to_ram ? DMA_TO_RAM : 0);
    for (unsigned long i = 0; i < 200000000ul && (*reg(EDU_DMA_CMD) & DMA_START); i++) {
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
    volatile uint32_t *cfg = (volatile uint32_t *)(ecam + ECAM_FUNCTION);
    cfg[0x10 / 4] = BAR0;
    cfg[0x04 / 4] |= 0x6; /* memory space and bus master */
    volatile uint8_t *page = (volatile uint8_t *)buffers;

    uint64_t iova = 0;
    uint64_t err = iommu_map(IOMMU, 0, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    say("MAP of its buffer's first page", err);
    if (err) {
        return;
    }
    /* The device reads the first 256 bytes and writes them back 2 KiB further on. */
    fill(page, 0xc5);
    fill(page + 0x800, 0);
    dma(iova, EDU_BUFFER, 0);
    dma(EDU_BUFFER, iova + 0x800, 1);
    microkit_dbg_puts(holds(page + 0x800, 0xc5) ? "c-edu: DMA through the mapping copied the bytes\n"
                                                : "c-edu: DMA through the mapping FAILED\n");
    /* The second page of its buffer is not mapped. */
    fill(page + 0x1000, 0x11);
    dma(EDU_BUFFER, iova + 0x1000, 1);
    microkit_dbg_puts(holds(page + 0x1000, 0x11) ? "c-edu: DMA past the mapping is blocked\n"
                                                 : "c-edu: DMA past the mapping LANDED\n");
    err = iommu_unmap(IOMMU, MY_DEVICE, &iova, 1);
    say("UNMAP", err);
    fill(page + 0x800, 0x22);
    dma(EDU_BUFFER, iova + 0x800, 1);
    microkit_dbg_puts(holds(page + 0x800, 0x22) ? "c-edu: after UNMAP the old IOVA is dead\n"
                                                : "c-edu: after UNMAP the old IOVA still LANDS\n");

    uint32_t grant = 0, theirs = 0;
    err = iommu_grant(IOMMU, 0, EDU_DRIVER, 0, 0x1000, IOMMU_RIGHTS_READ, EDU_DRIVER_DEVICES, &grant, &theirs);
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
}

void notified(microkit_channel ch)
{
    if (ch != IOMMU) {
        return;
    }
    struct iommu_fault_record out[8];
    unsigned n = iommu_take_faults((const volatile struct iommu_fault_ring *)fault_ring, IOMMU, &next_fault, out, 8);
    for (unsigned i = 0; i < n; i++) {
        microkit_dbg_puts("c-edu: told: stream ");
        put_hex(out[i].stream);
        microkit_dbg_puts(out[i].write ? " write at iova " : " read at iova ");
        put_hex(out[i].iova);
        microkit_dbg_puts("..=");
        put_hex(out[i].iova_last);
        microkit_dbg_puts("\n");
    }
}

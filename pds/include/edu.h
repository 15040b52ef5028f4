/*
 * QEMU's edu device as the C PDs and the VM guest drive it: its DMA engine copies LEN
 * bytes between its own buffer (at EDU_BUFFER in its address space) and an address on
 * the bus, which the IOMMU translates. Nothing here depends on Microkit.
 */
#pragma once
#include <stdint.h>

#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_DMA_START 1u
#define EDU_DMA_TO_RAM 2u
#define EDU_BUFFER 0x40000u
#define EDU_LEN 256

/* A write that is meant to miss, kept short: QEMU faults once per 4-byte transaction, and
 * the faults count against the device's storm limit (its quarantine). */
#define EDU_PROBE_LEN 16

/* Run one DMA of `len` bytes on the device whose BAR 0 is mapped at `bar` and wait
 * (bounded) for it: did the device finish it (its START bit clear again)? */
static inline int edu_dma_len(uintptr_t bar, uint64_t src, uint64_t dst, unsigned to_ram, uint64_t len)
{
    volatile uint64_t *r = (volatile uint64_t *)bar;
    r[EDU_DMA_SRC / 8] = src;
    r[EDU_DMA_DST / 8] = dst;
    r[EDU_DMA_COUNT / 8] = len;
    r[EDU_DMA_CMD / 8] = EDU_DMA_START | (to_ram ? EDU_DMA_TO_RAM : 0);
    for (unsigned long i = 0; i < 200000000ul && (r[EDU_DMA_CMD / 8] & EDU_DMA_START); i++) {
    }
    return !(r[EDU_DMA_CMD / 8] & EDU_DMA_START);
}

/* Run one DMA of EDU_LEN bytes (edu_dma_len): did the device finish it? */
static inline int edu_dma(uintptr_t bar, uint64_t src, uint64_t dst, unsigned to_ram)
{
    return edu_dma_len(bar, src, dst, to_ram, EDU_LEN);
}

/* Do the EDU_LEN bytes at `p` all hold `byte`? */
static inline int edu_bytes_hold(volatile uint8_t *p, uint8_t byte)
{
    for (unsigned i = 0; i < EDU_LEN; i++) {
        if (p[i] != byte) {
            return 0;
        }
    }
    return 1;
}

static inline void edu_bytes_fill(volatile uint8_t *p, uint8_t byte)
{
    for (unsigned i = 0; i < EDU_LEN; i++) {
        p[i] = byte;
    }
}

/* The device reads EDU_LEN bytes of `byte` from `page` (at `iova` on the bus) into its
 * buffer and writes them back 2 KiB further on: did they arrive? */
static inline int edu_round_trip(uintptr_t bar, volatile uint8_t *page, uint64_t iova, uint8_t byte)
{
    edu_bytes_fill(page, byte);
    edu_bytes_fill(page + 0x800, 0);
    edu_dma(bar, iova, EDU_BUFFER, 0);
    edu_dma(bar, EDU_BUFFER, iova + 0x800, 1);
    return edu_bytes_hold(page + 0x800, byte);
}

/* What became of a write the device was asked for (`edu_write_outcome`). */
enum edu_write { EDU_WRITE_LANDED, EDU_WRITE_MISSED, EDU_WRITE_NOT_FINISHED };

/* The device writes its buffer to `iova`, which must not reach `watch`: did the write land
 * (`watch` no longer holds `byte`), miss, or was it not finished when looked at (a device
 * that never ran its DMA, whose miss would show nothing)? (`byte` must differ from what
 * the device's buffer holds.) */
static inline enum edu_write edu_write_outcome(uintptr_t bar, uint64_t iova, volatile uint8_t *watch, uint8_t byte)
{
    edu_bytes_fill(watch, byte);
    int finished = edu_dma(bar, EDU_BUFFER, iova, 1);
    if (!edu_bytes_hold(watch, byte)) {
        return EDU_WRITE_LANDED;
    }
    return finished ? EDU_WRITE_MISSED : EDU_WRITE_NOT_FINISHED;
}

/* The device writes its buffer to `iova`, which must not reach `watch`: did the device
 * finish the write with `watch` still holding `byte`? A write not finished is no miss:
 * its page shows nothing yet, whatever the IOMMU does. (`byte` must differ from what the
 * device's buffer holds.) */
static inline int edu_write_misses(uintptr_t bar, uint64_t iova, volatile uint8_t *watch, uint8_t byte)
{
    return edu_write_outcome(bar, iova, watch, byte) == EDU_WRITE_MISSED;
}

/* edu_write_misses with a write of EDU_PROBE_LEN bytes: 4 faults where it misses, not 64. */
static inline int edu_probe_misses(uintptr_t bar, uint64_t iova, volatile uint8_t *watch, uint8_t byte)
{
    edu_bytes_fill(watch, byte);
    int finished = edu_dma_len(bar, EDU_BUFFER, iova, 1, EDU_PROBE_LEN);
    return finished && edu_bytes_hold(watch, byte);
}

/* A hostile guest against the VMMs' emulated configuration space (pds/vpci/vpci.c), on the
 * host: this program plays the guest (each vpci_access is one trapped ECAM access, as
 * pds/linux-vmm/ecam_trap.c and pds/c-vmm hand it over) and a stand-in IOMMU PD holding one
 * function's configuration space, answering CONFIG_READ/CONFIG_WRITE as the service's
 * filter does for BARs, the ROM BAR and Interrupt Line (refused unless a sizing probe or
 * the value held), and recording every request. It prints, for tests/vpci.rs, what the
 * guest read back, what reached the stand-in, and the VMM's console lines. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "iommu_client.h"
#include "vpci.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

#define DEVICE 3
/* The function as the IOMMU PD placed it, in the window at 0x1020_0000: BAR1 a 32-bit
 * memory BAR of 4 KiB, BAR4+5 a 64-bit prefetchable one of 16 KiB (virtio-pci's layout),
 * BAR0 an I/O BAR of 32 bytes (hidden by the VMM). */
#define WINDOW_PA 0x10200000u
#define WINDOW_GPA 0x10000000u
static uint8_t space[4096];
static const uint32_t bar_size[6] = { 0x20, 0x1000, 0, 0, 0x4000, 0 };
static uint32_t config_reads, config_writes, console_lines;
/* A device whose Memory Space does not take a write (one the VMM cannot make decode). */
static bool memory_stays_off;

static uint32_t get(uint16_t off, uint8_t width)
{
    uint32_t v = 0;
    memcpy(&v, &space[off], width);
    return v;
}

static void put(uint16_t off, uint8_t width, uint32_t v)
{
    memcpy(&space[off], &v, width);
}

/* A BAR dword as a sizing write of all ones reads it back (the upper half of a 64-bit BAR
 * takes all ones: it decodes all 32 bits). */
static uint32_t size_mask(int i)
{
    if (i == 5) {
        return 0xffffffffu;
    }
    if (bar_size[i] == 0) {
        return 0;
    }
    return (~(bar_size[i] - 1)) | (get(0x10 + 4 * i, 4) & (i == 0 ? 0x3 : 0xf));
}

static uint64_t iommu_pd(uint64_t label)
{
    if (label == IOMMU_OP_STOP) {
        printf("pd stop %lu\n", stub_mrs[64]);
        return stub_mrs[64] == DEVICE ? 0 : IOMMU_ERR_BAD_DEVICE;
    }
    uint64_t device = stub_mrs[64], where = stub_mrs[65], value = stub_mrs[66];
    uint16_t off = where & 0xffff;
    uint8_t width = (where >> IOMMU_CONFIG_WIDTH_SHIFT) & 0xff;
    if (device != DEVICE || (width != 1 && width != 2 && width != 4) || off % width || off >= 4096) {
        return IOMMU_ERR_BAD_DEVICE;
    }
    if (label == IOMMU_OP_CONFIG_READ) {
        config_reads++;
        printf("pd read %#x %u\n", off, width);
        stub_mrs[0] = get(off, width);
        return 0;
    }
    if (label != IOMMU_OP_CONFIG_WRITE) {
        return IOMMU_ERR_UNKNOWN_OP;
    }
    config_writes++;
    printf("pd write %#x %u %#lx\n", off, width, value);
    if (off >= 0x10 && off < 0x28) {
        if (width != 4) {
            return IOMMU_ERR_CONFIG_DENIED;
        }
        if (value == 0xffffffffu) {
            stub_mrs[0] = size_mask((off - 0x10) / 4);
            return 0;
        }
        if (value != get(off, 4)) {
            return IOMMU_ERR_CONFIG_DENIED;
        }
        stub_mrs[0] = value;
        return 0;
    }
    if (off < 0x40 && !(off >= 0x04 && off + width <= 0x08)) {
        return IOMMU_ERR_CONFIG_DENIED;
    }
    put(off, width, (uint32_t)value);
    if (memory_stays_off) {
        put(0x04, 2, get(0x04, 2) & ~0x2u);
    }
    stub_mrs[0] = get(off, width);
    return 0;
}

void vpci_printf(const char *fmt, ...)
{
    console_lines++;
    va_list va;
    va_start(va, fmt);
    fputs("console ", stdout);
    vprintf(fmt, va);
    va_end(va);
}

static uint32_t guest_read(uint64_t off, int width)
{
    uint32_t v = 0x5a5a5a5au;
    vpci_access(off, true, width, &v);
    return v;
}

static void guest_write(uint64_t off, int width, uint32_t v)
{
    vpci_access(off, false, width, &v);
}

static void reads(const char *what, uint64_t off, int width)
{
    printf("guest %s %#x\n", what, guest_read(off, width));
}

int main(void)
{
    stub_iommu_pd = iommu_pd;
    put(0x00, 4, 0x10421af4);
    put(0x04, 2, 0x0000);
    put(0x10, 4, 0x00001001);              /* BAR0: I/O */
    put(0x14, 4, WINDOW_PA);               /* BAR1: 32-bit memory */
    put(0x20, 4, WINDOW_PA + 0x400c);      /* BAR4: 64-bit, prefetchable */
    put(0x24, 4, 0);
    put(0x3c, 4, 0x0000010b);              /* pin INTA, line 11 */
    struct vpci_config cfg = {
        .iommu = 1,
        .device = DEVICE,
        .ecam_gpa = 0x3f000000,
        .ecam_size = 0x100000,
        .bar_window_pa = WINDOW_PA,
        .bar_window_gpa = WINDOW_GPA,
        .bar_window_size = 0x100000,
    };
    printf("init %d\n", vpci_init(&cfg));
    uint8_t placed[0x28];
    memcpy(placed, space, sizeof placed);

    /* What the guest sees of each BAR, and a sizing of each. */
    for (int i = 0; i < 6; i++) {
        char what[32];
        snprintf(what, sizeof what, "bar%d", i);
        reads(what, 0x10 + 4 * i, 4);
        guest_write(0x10 + 4 * i, 4, 0xffffffffu);
        snprintf(what, sizeof what, "bar%d-sized", i);
        reads(what, 0x10 + 4 * i, 4);
    }
    /* Moves: onto the VMM's own memory, another device's window, the ECAM, the GIC; the
     * 64-bit BAR's halves one by one; bytes and halves at every offset. */
    guest_write(0x14, 4, 0x08000000);
    reads("bar1-moved", 0x14, 4);
    guest_write(0x24, 4, 0x1);
    guest_write(0x20, 4, 0x3f000000);
    reads("bar4-lo-moved", 0x20, 4);
    reads("bar5-hi-moved", 0x24, 4);
    for (uint16_t off = 0x10; off < 0x28; off++) {
        guest_write(off, 1, 0xa5);
    }
    for (uint16_t off = 0x10; off < 0x28; off += 2) {
        guest_write(off, 2, 0x1234);
    }
    reads("bar4-after-bytes", 0x20, 4);
    /* The expansion ROM BAR, and Interrupt Line with the pin beside it. */
    guest_write(0x30, 4, 0xfffff801u);
    reads("rom", 0x30, 4);
    guest_write(0x3c, 2, 0x0722);
    reads("line-pin", 0x3c, 4);
    /* Every other slot and function of the bus, at every width. */
    guest_write(0x1000 + 0x04, 2, 0x0006);
    guest_write(0xff000 + 0x10, 4, 0);
    reads("other-fn-1", 0x1000, 1);
    reads("other-fn-2", 0x8000 + 2, 2);
    reads("other-fn-4", 0xff000 + 0xffc, 4);
    /* Command: Bus Master and Memory Space on, then off, as a driver with DMA in flight. */
    guest_write(0x04, 2, 0x0006);
    reads("command-on", 0x04, 2);
    guest_write(0x04, 1, 0x00);
    reads("command-off", 0x04, 2);
    printf("device command-off %#x\n", get(0x04, 2));
    guest_write(0x04, 4, 0x00000404);
    reads("command-dword-off", 0x04, 4);
    printf("device command-dword-off %#x\n", get(0x04, 2));
    /* Memory Space on as the guest sees it, then writes beside it: Command's high byte
     * (INTx Disable), Status as a half and as bytes (its error bits, write-one-to-clear).
     * None of them is Command's low byte: the guest's Memory Space stays as it wrote it. */
    guest_write(0x04, 2, 0x0006);
    guest_write(0x05, 1, 0x04);
    guest_write(0x06, 2, 0xffff);
    guest_write(0x07, 1, 0xff);
    reads("command-beside", 0x04, 2);
    reads("command-beside-low", 0x04, 1);
    printf("device command-beside %#x\n", get(0x04, 2));
    /* And its low byte alone, Memory Space off: the device's stays on. */
    guest_write(0x04, 1, 0x04);
    reads("command-low-off", 0x04, 2);
    printf("device command-low-off %#x\n", get(0x04, 2));
    printf("device bars %s\n", memcmp(placed + 0x10, space + 0x10, 0x18) ? "CHANGED" : "unchanged");
    printf("device line %#x\n", get(0x3c, 4));

    /* A flood: the guest moves a BAR in a loop. Each move is a trapped access; what the
     * VMM does for it besides must stay bounded (console lines, calls to the IOMMU PD). */
    uint32_t lines = console_lines, calls = config_reads + config_writes;
    for (uint32_t n = 0; n < 10000; n++) {
        guest_write(0x14, 4, 0x20000000u + (n << 12));
    }
    printf("flood lines %u calls %u\n", console_lines - lines, config_reads + config_writes - calls);
    /* What a trapped load leaves in its register: LDRB/LDRH/LDR (zero-extended), LDRSB,
     * LDRSH into W and X registers, LDRSW. SSE is ISS bit 21, SF bit 15. */
    const uint64_t sse = 1ull << 21, sf = 1ull << 15;
    printf("loaded ldrb %#llx\n", (unsigned long long)vpci_loaded(0x80, 1, sf));
    printf("loaded ldrsb-w %#llx\n", (unsigned long long)vpci_loaded(0x80, 1, sse));
    printf("loaded ldrsb-x %#llx\n", (unsigned long long)vpci_loaded(0x80, 1, sse | sf));
    printf("loaded ldrsh-x-positive %#llx\n", (unsigned long long)vpci_loaded(0x7fff, 2, sse | sf));
    printf("loaded ldrsh-x %#llx\n", (unsigned long long)vpci_loaded(0x8000, 2, sse | sf));
    printf("loaded ldr-w %#llx\n", (unsigned long long)vpci_loaded(0x80000000u, 4, 0));
    printf("loaded ldrsw %#llx\n", (unsigned long long)vpci_loaded(0x80000000u, 4, sse | sf));
    /* A STOP's reset (Command 0), then the VMM's restart of the guest. */
    put(0x04, 2, 0);
    printf("restart %d\n", vpci_restart());
    printf("device command-restarted %#x\n", get(0x04, 2));
    reads("command-restarted", 0x04, 2);
    reads("bar1-restarted", 0x14, 4);
    reads("line-pin-restarted", 0x3c, 4);
    struct vpci_stats st = vpci_stats();
    printf("stats bar_writes %u forwarded %u refused %u other %u\n", st.bar_writes, st.forwarded, st.refused,
           st.other_functions);
    /* After a RESUME: a device that will not decode leaves the guest stopped, and the
     * device is stopped again (the RESUME mapped the guest's RAM for it). */
    memory_stays_off = true;
    put(0x04, 2, 0);
    printf("resumed %d\n", vpci_resumed());
    memory_stays_off = false;
    printf("resumed-decoding %d\n", vpci_resumed());
    return 0;
}

/*
 * A guest's PCI configuration space, for both VMMs (pds/linux-vmm on libvmm, pds/c-vmm on
 * libmicrokit alone): each builds this file, and neither's fault handling is in it. The
 * guest's ECAM is a guest-physical range the VM does not map: each access is a VM fault,
 * which the VMM decodes and hands to vpci_access, which emulates a bus with one function
 * on it, 00:00.0, the passed-through device. What the guest reads and writes of that
 * function goes to the IOMMU PD (the owner of configuration space) as
 * CONFIG_READ/CONFIG_WRITE of the VMM's own device; the IOMMU PD filters each register,
 * as it does for any driver, so the guest can do no more to the device than a driver PD
 * may.
 *
 * Virtual, never forwarded (what vfio-pci virtualises too):
 *   - the BARs: the guest sees them at guest-physical addresses (the real window moved to
 *     where the VM maps it); a sizing write of all ones reads back the size mask, any other
 *     write is kept here, masked to the BAR's size, and the device's own BARs stay where
 *     the IOMMU PD placed them. A guest that moves a BAR finds nothing there (the VM's map
 *     is static; linux,pci-probe-only in its device tree keeps Linux from moving them);
 *   - the expansion ROM BAR (reads 0: no ROM);
 *   - Interrupt Line (a byte the guest's OS writes for itself; the IOMMU PD refuses it);
 *   - Command's Memory Space bit: the guest reads back what it wrote, and the device's
 *     stays on. The VM maps the BARs' window for good (its maps are static), so a guest
 *     that turns decoding off and then touches its BARs would reach a function that does
 *     not answer them, which a root complex on hardware may report with an SError, taking
 *     more than the guest with it (CVE-2020-12888; vfio-pci unmaps the BARs instead, which
 *     a Microkit VMM cannot). Decoding stays on from vpci_init, so the guest's accesses
 *     always land on registers. Bus Master and the other bits go to the device.
 * A write the IOMMU PD refuses (ConfigDenied) is dropped, as a write to a read-only
 * register is, and counted.
 */
#include <stdbool.h>
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "vpci.h"

#define COMMAND 0x04
#define COMMAND_MEMORY_SPACE 0x2u
#define BAR0 0x10
#define BAR_END 0x28
#define ROM_BAR 0x30
#define INTERRUPT_LINE 0x3c
#define NUM_BARS 6

/* A BAR as the guest sees it. */
struct vbar {
    bool present;   /* for the upper half of a 64-bit BAR too (flags 0) */
    uint32_t flags; /* the low 4 bits of a memory BAR (type, prefetchable) */
    uint32_t mask;  /* what a sizing write reads back, flags excluded */
    uint32_t value; /* what the guest reads */
    uint32_t placed; /* where its registers are mapped for the guest (`value` at start) */
};

static struct vpci_config cfg;
static struct vbar bars[NUM_BARS];
static uint8_t interrupt_line;
/* Memory Space as the guest last wrote it (what it reads back); the device's is on. */
static bool guest_memory_space;
static struct vpci_stats stats;
/* BAR moves by the guest so far; the first MOVES_SAID are printed. */
#define MOVES_SAID 4
static uint32_t moves;

struct vpci_stats vpci_stats(void)
{
    return stats;
}

static uint64_t config_read(uint16_t offset, uint8_t width, uint32_t *value)
{
    return iommu_config_read(cfg.iommu, cfg.device, offset, width, value);
}

/* The device's Memory Space on, read back, whatever the guest's is. */
static bool device_decoding(void)
{
    uint32_t command, after = 0;
    uint64_t err = config_read(COMMAND, 2, &command);
    if (!err) {
        err = iommu_config_write(cfg.iommu, cfg.device, COMMAND, 2, command | COMMAND_MEMORY_SPACE, &after);
    }
    if (err || !(after & COMMAND_MEMORY_SPACE)) {
        vpci_printf("vmm: vpci: the device's Memory Space could not be turned on (%s); not started\n",
                    err ? iommu_strerror(err) : "it reads back off");
        return false;
    }
    return true;
}

bool vpci_restart(void)
{
    for (int i = 0; i < NUM_BARS; i++) {
        bars[i].value = bars[i].placed;
    }
    interrupt_line = 0;
    guest_memory_space = false;
    return device_decoding();
}

bool vpci_resumed(void)
{
    if (vpci_restart()) {
        return true;
    }
    /* RESUME mapped the guest's RAM for the device again, and no guest will run to drive
     * it: stopped again (blocked, confirmed, its mappings gone), as the VM is. */
    uint64_t err = iommu_stop(cfg.iommu, cfg.device, NULL);
    vpci_printf("vmm: vpci: the device stopped again, as its guest is: %s\n",
                err ? iommu_strerror(err) : "confirmed");
    return false;
}

bool vpci_init(const struct vpci_config *c)
{
    cfg = *c;
    uint32_t id;
    uint64_t err = config_read(0, 4, &id);
    if (err) {
        vpci_printf("vmm: vpci: CONFIG_READ of the device refused: %s\n", iommu_strerror(err));
        return false;
    }
    for (int i = 0; i < NUM_BARS; i++) {
        uint32_t lo, mask;
        uint16_t off = BAR0 + 4 * i;
        if (config_read(off, 4, &lo)) {
            return false;
        }
        /* Sizing through the IOMMU PD: it writes all ones with decoding off and restores. */
        err = iommu_config_write(cfg.iommu, cfg.device, off, 4, 0xffffffff, &mask);
        if (err) {
            vpci_printf("vmm: vpci: sizing BAR%d refused: %s\n", i, iommu_strerror(err));
            return false;
        }
        if (mask == 0) {
            continue;
        }
        if (lo & 1) {
            vpci_printf("vmm: vpci: BAR%d is an I/O BAR, which this VMM does not pass through; hidden\n", i);
            continue;
        }
        struct vbar *b = &bars[i];
        b->present = true;
        b->flags = lo & 0xf;
        b->mask = mask & ~0xfu;
        uint64_t pa = lo & ~0xfull;
        uint64_t size = (uint64_t)(~b->mask) + 1;
        bool is64 = ((lo >> 1) & 3) == 2;
        if (is64) {
            uint32_t hi, hmask;
            if (i + 1 >= NUM_BARS || config_read(off + 4, 4, &hi) ||
                iommu_config_write(cfg.iommu, cfg.device, off + 4, 4, 0xffffffff, &hmask)) {
                return false;
            }
            pa |= (uint64_t)hi << 32;
            bars[i + 1] = (struct vbar) { .present = true, .mask = hmask, .value = 0 };
        }
        if (pa < cfg.bar_window_pa || pa + size > cfg.bar_window_pa + cfg.bar_window_size) {
            vpci_printf("vmm: vpci: BAR%d at 0x%lx (0x%lx bytes) is outside the window the VM maps "
                   "[0x%lx, 0x%lx)\n",
                   i, pa, size, cfg.bar_window_pa, cfg.bar_window_pa + cfg.bar_window_size);
            return false;
        }
        uint64_t gpa = pa - cfg.bar_window_pa + cfg.bar_window_gpa;
        b->value = b->placed = (uint32_t)gpa | b->flags;
        if (is64) {
            bars[i + 1].value = bars[i + 1].placed = (uint32_t)(gpa >> 32);
        }
        vpci_printf("vmm: vpci: BAR%d at 0x%lx, 0x%lx bytes: the guest sees it at guest-physical 0x%lx\n", i, pa, size, gpa);
        if (is64) {
            i++;
        }
    }
    if (!device_decoding()) {
        return false;
    }
    vpci_printf("vmm: vpci: the guest's ECAM at 0x%lx is emulated: 00:00.0 is device %04x:%04x, nothing else\n",
           cfg.ecam_gpa, id & 0xffff, id >> 16);
    return true;
}

/* The dword at `reg` (4-aligned) as the guest sees it, for the registers kept here; false
 * if the dword is the device's. */
static bool virtual_dword(uint16_t reg, uint32_t *out)
{
    if (reg >= BAR0 && reg < BAR_END) {
        struct vbar *b = &bars[(reg - BAR0) / 4];
        *out = b->present ? b->value : 0;
        return true;
    }
    if (reg == ROM_BAR) {
        *out = 0;
        return true;
    }
    return false;
}

static void write_bar(int i, uint32_t v)
{
    struct vbar *b = &bars[i];
    stats.bar_writes++;
    if (!b->present) {
        return;
    }
    /* What the guest reads back: the address bits the BAR has, its flags unchanged (all
     * ones reads back the size mask, as the PCI spec's sizing expects). */
    b->value = (v & b->mask) | b->flags;
    if (v != 0xffffffff && b->value != b->placed) {
        /* Moved: kept here only. Said the first few times, with what the device's own BAR
         * reads; a guest moving BARs in a loop gets no more from the VMM than a trapped
         * access (no line on the shared console, no call to the IOMMU PD), counted. */
        if (++moves > MOVES_SAID) {
            if (moves == MOVES_SAID + 1) {
                vpci_printf("vmm: vpci: the guest's further BAR moves are emulated as these were, not printed\n");
            }
            return;
        }
        uint32_t real = 0;
        config_read(BAR0 + 4 * i, 4, &real);
        vpci_printf("vmm: vpci: the guest moved BAR%d to 0x%x: emulated, not written to the device, whose BAR%d "
               "reads 0x%x; no registers at the new place\n",
               i, b->value, i, real);
    }
}

void vpci_access(uint64_t offset, bool is_read, int width, uint32_t *data)
{
    uint64_t fn = offset >> 12;
    uint16_t reg = offset & 0xfff;
    uint16_t dword = reg & ~3u;
    unsigned shift = (reg & 3) * 8;
    uint32_t wmask = width == 4 ? 0xffffffffu : ((1u << (8 * width)) - 1);
    if (fn != 0) {
        /* Another slot or function: nothing there. */
        stats.other_functions++;
        if (is_read) {
            *data = wmask;
        }
        return;
    }
    if (is_read) {
        stats.reads++;
        uint32_t v;
        if (!virtual_dword(dword, &v)) {
            stats.forwarded++;
            if (config_read(dword, 4, &v)) {
                v = 0xffffffff;
            }
            if (dword == INTERRUPT_LINE) {
                v = (v & ~0xffu) | interrupt_line;
            }
            if (dword == COMMAND) {
                v = (v & ~COMMAND_MEMORY_SPACE) | (guest_memory_space ? COMMAND_MEMORY_SPACE : 0);
            }
        }
        *data = (v >> shift) & wmask;
        return;
    }
    stats.writes++;
    uint32_t v = *data & wmask;
    if (dword >= BAR0 && dword < BAR_END) {
        int i = (dword - BAR0) / 4;
        uint32_t old = bars[i].present ? bars[i].value : 0;
        write_bar(i, (old & ~(wmask << shift)) | (v << shift));
        return;
    }
    if (dword == ROM_BAR) {
        return;
    }
    if (dword == INTERRUPT_LINE) {
        if (reg == INTERRUPT_LINE) {
            interrupt_line = v & 0xff;
        }
        /* Interrupt Pin, Min_Gnt, Max_Lat: read-only. */
        return;
    }
    if (reg == COMMAND) {
        /* Every aligned write that covers Command's low byte starts at it. */
        guest_memory_space = v & COMMAND_MEMORY_SPACE;
        v |= COMMAND_MEMORY_SPACE;
    }
    uint32_t after;
    stats.forwarded++;
    uint64_t err = iommu_config_write(cfg.iommu, cfg.device, reg, width, v, &after);
    if (err) {
        stats.refused++;
        if (stats.refused <= 4) {
            vpci_printf("vmm: vpci: the guest's write of 0x%x to 0x%x (%d bytes) refused by the IOMMU PD (%s): dropped\n", v,
                   reg, width, iommu_strerror(err));
        }
    }
}

uint64_t vpci_loaded(uint32_t v, int width, uint64_t esr)
{
    uint64_t value = v;
    /* Up to 64 bits, then cut to 32 for a W register: LDRSW (4 bytes) sign-extends too. */
    if ((esr & (1ull << 21)) && width <= 4 && (v >> (8 * width - 1)) & 1) {
        value |= ~0ull << (8 * width);
    }
    if (!(esr & (1ull << 15))) {
        value &= 0xffffffffull;
    }
    return value;
}

/*
 * The VMM's own check that the disk, STOPped with its VM, reaches nothing of the guest's
 * RAM. The VMM drives the disk itself, as a guest driver would, through its virtio
 * registers (its BAR window, which this PD maps too) and queue 0 placed in the guest's
 * RAM at guest-physical addresses, which are the disk's IOVAs: a disk that could still
 * reach the guest's RAM would read the descriptors and write the sector and the status
 * byte there. The VMM turns the function's Memory Space and Bus Master back on first, as
 * a hostile owner could (the IOMMU PD's filter lets the owner write them), so what stops
 * the DMA is the SMMU's block and nothing else.
 *
 * Virtio 1.2 (OASIS), 4.1.4: the capabilities that locate the registers; 4.1.4.3 the
 * common configuration; 2.7 the split virtqueue; 5.2.6 virtio-blk's request.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <microkit.h>
#include <sddf/util/printf.h>

#include "iommu_client.h"
#include "stopped_disk.h"

/* Virtio PCI capability types (4.1.4) and the common configuration's registers. */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define CAP_VENDOR 0x09
#define COMMON_DRIVER_FEATURE_SELECT 0x08
#define COMMON_DRIVER_FEATURE 0x0c
#define COMMON_DEVICE_FEATURE_SELECT 0x00
#define COMMON_DEVICE_FEATURE 0x04
#define COMMON_STATUS 0x14
#define COMMON_QUEUE_SELECT 0x16
#define COMMON_QUEUE_SIZE 0x18
#define COMMON_QUEUE_ENABLE 0x1c
#define COMMON_QUEUE_NOTIFY_OFF 0x1e
#define COMMON_QUEUE_DESC 0x20
#define COMMON_QUEUE_DRIVER 0x28
#define COMMON_QUEUE_DEVICE 0x30
/* Device status bits (2.1). */
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 0x40
/* Feature bits 32 and 33, in the upper word: VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM
 * (the device's DMA goes through the platform's IOMMU, as QEMU's iommu_platform=on says). */
#define F_HI_VERSION_1 (1u << 0)
#define F_HI_ACCESS_PLATFORM (1u << 1)
/* Split virtqueue descriptor flags. */
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
/* PCI Command bits. */
#define CMD_MEMORY (1u << 1)
#define CMD_BUS_MASTER (1u << 2)
#define CMD_INTX_DISABLE (1u << 10)

/* The queue, in the guest's RAM at this offset (below where the initramfs goes; the
 * guest is stopped, and its next boot loads its images afresh). */
#define QUEUE_OFFSET 0x6000000ul
#define QUEUE_SIZE 8
#define SECTOR_AT_1MIB 2048
#define FILL 0x5a

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* The queue's page: descriptors, the available ring, the used ring, the request. */
struct queue_page {
    struct desc desc[QUEUE_SIZE];
    struct {
        uint16_t flags, idx, ring[QUEUE_SIZE];
    } avail;
    uint8_t pad0[0x100 - sizeof(struct desc) * QUEUE_SIZE - 2 * (2 + QUEUE_SIZE)];
    struct {
        uint16_t flags, idx;
        struct {
            uint32_t id, len;
        } ring[QUEUE_SIZE];
    } used;
    uint8_t pad1[0x200 - 0x100 - 4 - 8 * QUEUE_SIZE];
    struct {
        uint32_t type, reserved;
        uint64_t sector;
    } header;
    uint8_t status;
    uint8_t pad2[0x400 - 0x200 - 17];
    uint8_t data[512];
};

_Static_assert(offsetof(struct queue_page, used) == 0x100, "the used ring's place");
_Static_assert(offsetof(struct queue_page, header) == 0x200, "the request's place");
_Static_assert(offsetof(struct queue_page, data) == 0x400, "the buffer's place");

static struct stopped_disk d;
static volatile uint8_t *common;
static volatile uint8_t *notify_base;
static uint32_t notify_multiplier;

static uint32_t cfg(uint16_t offset, uint8_t width)
{
    uint32_t v = 0xffffffff;
    if (iommu_config_read(d.iommu, d.device, offset, width, &v) != 0) {
        return 0xffffffff;
    }
    return v;
}

/* Where BAR `bar`'s `offset` is in this PD's mapping of the BAR window; NULL if it is not
 * in the window. */
static volatile uint8_t *in_window(uint8_t bar, uint32_t offset)
{
    if (bar > 5) {
        return NULL;
    }
    uint64_t lo = cfg(0x10 + 4 * bar, 4);
    uint64_t base = lo & ~0xfull;
    if ((lo & 0x6) == 0x4 && bar < 5) {
        base |= (uint64_t)cfg(0x14 + 4 * bar, 4) << 32;
    }
    uint64_t at = base + offset;
    if (lo & 1 || at < d.window_pa || at - d.window_pa >= 0x100000) {
        return NULL;
    }
    return (volatile uint8_t *)(d.regs_vaddr + (at - d.window_pa));
}

bool stopped_disk_find(const struct stopped_disk *disk)
{
    d = *disk;
    uint8_t p = cfg(0x34, 1) & 0xfc;
    for (int n = 0; p >= 0x40 && n < 48; n++) {
        if (cfg(p, 1) == CAP_VENDOR) {
            uint8_t type = cfg(p + 3, 1);
            volatile uint8_t *at = in_window(cfg(p + 4, 1), cfg(p + 8, 4));
            if (type == VIRTIO_PCI_CAP_COMMON_CFG) {
                common = at;
            } else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
                notify_base = at;
                notify_multiplier = cfg(p + 16, 4);
            }
        }
        p = cfg(p + 1, 1) & 0xfc;
    }
    if (!common || !notify_base) {
        sddf_printf("vmm: stopped disk: its virtio common configuration or notification registers are not in its BAR "
               "window\n");
        return false;
    }
    return true;
}

uint8_t stopped_disk_status(void)
{
    return common ? common[COMMON_STATUS] : 0xff;
}

uint8_t stopped_disk_mark(void)
{
    if (!common) {
        return 0xff;
    }
    common[COMMON_STATUS] = STATUS_ACKNOWLEDGE;
    return common[COMMON_STATUS];
}

uint32_t stopped_disk_command(void)
{
    return cfg(0x04, 2);
}

static void w16(uint16_t off, uint16_t v)
{
    *(volatile uint16_t *)(common + off) = v;
}

static void w32(uint16_t off, uint32_t v)
{
    *(volatile uint32_t *)(common + off) = v;
}

static void w64(uint16_t off, uint64_t v)
{
    w32(off, (uint32_t)v);
    w32(off + 4, (uint32_t)(v >> 32));
}

static uint64_t counter(void)
{
    uint64_t v;
    __asm__ volatile("isb; mrs %0, cntpct_el0" : "=r"(v));
    return v;
}

static uint64_t counter_hz(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(v));
    return v;
}

bool stopped_disk_reaches_nothing(void)
{
    if (!common) {
        return false;
    }
    uint32_t command = cfg(0x04, 2);
    uint32_t was = 0;
    iommu_config_write(d.iommu, d.device, 0x04, 2, CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE, &was);
    sddf_printf("vmm: stopped disk: Command 0x%x after STOP; the VMM turns Memory Space and Bus Master on again "
           "(Command 0x%x), as a hostile owner could\n",
           command, was);

    /* The request, in the guest's RAM: read the sector at 1 MiB (the test's random bytes)
     * into a buffer of FILL, the status byte 0xff. */
    uint64_t gpa = d.ram_gpa + QUEUE_OFFSET;
    volatile struct queue_page *q = (volatile struct queue_page *)(d.ram_vaddr + QUEUE_OFFSET);
    for (size_t i = 0; i < sizeof *q; i++) {
        ((volatile uint8_t *)q)[i] = 0;
    }
    for (size_t i = 0; i < sizeof q->data; i++) {
        q->data[i] = FILL;
    }
    q->status = 0xff;
    q->header.type = 0; /* VIRTIO_BLK_T_IN */
    q->header.sector = SECTOR_AT_1MIB;
    q->desc[0] = (struct desc) { gpa + offsetof(struct queue_page, header), 16, DESC_F_NEXT, 1 };
    q->desc[1] = (struct desc) { gpa + offsetof(struct queue_page, data), 512, DESC_F_NEXT | DESC_F_WRITE, 2 };
    q->desc[2] = (struct desc) { gpa + offsetof(struct queue_page, status), 1, DESC_F_WRITE, 0 };
    q->avail.ring[0] = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    q->avail.idx = 1;

    /* As a driver brings the device up (3.1.1), with the queue at those guest-physical
     * addresses. */
    uint8_t reset = common[COMMON_STATUS];
    common[COMMON_STATUS] = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    w32(COMMON_DEVICE_FEATURE_SELECT, 1);
    uint32_t offered = *(volatile uint32_t *)(common + COMMON_DEVICE_FEATURE);
    w32(COMMON_DRIVER_FEATURE_SELECT, 0);
    w32(COMMON_DRIVER_FEATURE, 0);
    w32(COMMON_DRIVER_FEATURE_SELECT, 1);
    w32(COMMON_DRIVER_FEATURE, offered & (F_HI_VERSION_1 | F_HI_ACCESS_PLATFORM));
    common[COMMON_STATUS] = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    w16(COMMON_QUEUE_SELECT, 0);
    w16(COMMON_QUEUE_SIZE, QUEUE_SIZE);
    w64(COMMON_QUEUE_DESC, gpa + offsetof(struct queue_page, desc));
    w64(COMMON_QUEUE_DRIVER, gpa + offsetof(struct queue_page, avail));
    w64(COMMON_QUEUE_DEVICE, gpa + offsetof(struct queue_page, used));
    w16(COMMON_QUEUE_ENABLE, 1);
    common[COMMON_STATUS] = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
    uint16_t notify_off = *(volatile uint16_t *)(common + COMMON_QUEUE_NOTIFY_OFF);
    *(volatile uint16_t *)(notify_base + (uint64_t)notify_off * notify_multiplier) = 0;
    sddf_printf("vmm: stopped disk: virtio status 0x%x at first (0: reset), brought up with features 0x%x << 32 and "
           "queue 0 in guest RAM at 0x%lx, rung with a read of sector %d\n",
           reset, offered & (F_HI_VERSION_1 | F_HI_ACCESS_PLATFORM), gpa, SECTOR_AT_1MIB);

    /* Up to a second for a completion, or for the device to give up. */
    uint64_t until = counter() + counter_hz();
    while (counter() < until && q->used.idx == 0 && !(common[COMMON_STATUS] & STATUS_NEEDS_RESET)) {
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    unsigned changed = 0;
    for (size_t i = 0; i < sizeof q->data; i++) {
        changed += q->data[i] != FILL;
    }
    uint16_t used = q->used.idx;
    uint8_t status_byte = q->status;
    uint8_t status = common[COMMON_STATUS];
    sddf_printf("vmm: stopped disk: used index %u, %u of the buffer's 512 bytes changed, status byte 0x%x; virtio "
           "status 0x%x%s\n",
           used, changed, status_byte, status, status & STATUS_NEEDS_RESET ? " (DEVICE_NEEDS_RESET: its DMA failed)" : "");
    bool nothing = used == 0 && changed == 0 && status_byte == 0xff;
    sddf_printf(nothing ? "vmm: the stopped disk's DMA reached nothing of the guest's RAM\n"
                   : "vmm: the stopped disk's DMA REACHED the guest's RAM\n");

    /* Left as the STOP left it: the device reset, Bus Master off (the IOMMU PD keeps Memory
     * Space on where it placed the BARs, whatever this write asks). */
    common[COMMON_STATUS] = 0;
    iommu_config_write(d.iommu, d.device, 0x04, 2, 0, &was);
    return nothing;
}

/* A driver PD's edu device at 00:02.0 switched on through the IOMMU PD, which owns PCI
 * configuration space (no driver maps ECAM), placed the device's BAR0 before the driver
 * ran, and turns Memory Space and Bus Master on when asked. */
#pragma once
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_print.h"

/* Where the IOMMU PD puts edu 00:02.0's BAR0: the first MiB of the PCI memory window. */
#define EDU_00_02_BAR0 0x10000000u
/* Command: memory space and bus master (the IOMMU PD left both off). */
#define PCI_COMMAND_MEMORY_MASTER 0x6u

/* Check that `device`'s BAR0 is at EDU_00_02_BAR0, where the description maps it (or the
 * registers would not be the device this PD drives), then turn the device on. 1 if done;
 * 0, having said why as `who`, if not. */
static inline int edu_switch_on(const char *who, microkit_channel iommu, uint32_t device)
{
    uint32_t bar0 = 0;
    uint64_t err = iommu_config_read(iommu, device, 0x10, 4, &bar0);
    if (err || (bar0 & ~0xfu) != EDU_00_02_BAR0) {
        microkit_dbg_puts(who);
        microkit_dbg_puts(": BAR0 not where the description maps it: ");
        put_hex(err ? err : bar0);
        microkit_dbg_puts("\n");
        return 0;
    }
    err = iommu_config_write(iommu, device, 0x04, 2, PCI_COMMAND_MEMORY_MASTER, 0);
    if (err) {
        put_result(who, "CONFIG_WRITE turning its device on", err);
        return 0;
    }
    return 1;
}

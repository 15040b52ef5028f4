/*
 * The guest's PCI configuration space: one function, emulated by the VMM over the IOMMU
 * PD's CONFIG_READ/CONFIG_WRITE (see vpci.c). Shared by pds/linux-vmm and pds/c-vmm: the
 * VMM traps the guest's ECAM and decodes each access itself, and provides vpci_printf.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <microkit.h>

/* Where the guest sees its host bridge and its BARs, and where the real BARs are. */
struct vpci_config {
    microkit_channel iommu; /* the channel to the IOMMU PD (pp) */
    uint32_t device;        /* the passed-through device, as the IOMMU PD numbers ours */
    uint64_t ecam_gpa;      /* the guest's ECAM (bus 0 only): mapped nowhere, so every access traps */
    uint64_t ecam_size;
    uint64_t bar_window_pa;  /* the real BARs' window (where the IOMMU PD placed them) */
    uint64_t bar_window_gpa; /* where the VM maps that window */
    uint64_t bar_window_size;
};

/* Read the function's BARs (address, and size by the IOMMU PD's sizing probe) and check
 * that they lie in the window the VM maps; the VMM has trapped the guest's ECAM (its
 * accesses go to vpci_access). False (and said why) if any of it fails: the guest must not
 * then be started with a PCI bus. */
bool vpci_init(const struct vpci_config *cfg);

/* The guest's view reset for a new boot (its BARs where they were placed, Interrupt Line 0,
 * Memory Space off) and the device decoding again, which a STOP's reset turned off. Call it
 * after RESUME, before the guest runs again. False (and said why) if decoding cannot be
 * turned on: the guest must not then be started. */
bool vpci_restart(void);

/* vpci_restart, right after a RESUME of the device that succeeded; if it fails (the guest
 * must not then be started) the device is STOPped again, so that no device stays mapped
 * into the RAM of a guest that does not run. */
bool vpci_resumed(void);

/* One configuration access of the guest, at `offset` in its ECAM: `width` bytes (1, 2 or
 * 4), `*data` the value written, or filled with the value read. Never fails: what is not
 * the function reads as all ones, as an empty slot does, and writes to it are dropped. */
void vpci_access(uint64_t offset, bool is_read, int width, uint32_t *data);

/* What a trapped load of `width` bytes (1, 2 or 4) that read `v` leaves in its register,
 * from the data abort's syndrome `esr` (ESR_EL2's ISS, Arm ARM D17.2.40): SSE (bit 21)
 * sign-extends it (LDRSB, LDRSH, LDRSW), SF (bit 15) says the register is an X register;
 * into a W register the upper half is zeroed. Both VMMs write this into the register the
 * syndrome names. */
uint64_t vpci_loaded(uint32_t v, int width, uint64_t esr);

/* How many of the guest's accesses went to the IOMMU PD as CONFIG_READ/CONFIG_WRITE, how
 * many of its writes the IOMMU PD refused (dropped, as writes to read-only registers
 * are), and how many BAR writes were emulated and never reached the device. */
struct vpci_stats {
    uint32_t reads, writes, forwarded, refused, bar_writes, other_functions;
};
struct vpci_stats vpci_stats(void);

/* The VMM's console: vpci.c says what it found and what it dropped through it. */
void vpci_printf(const char *fmt, ...) __attribute__((format(__printf__, 1, 2)));

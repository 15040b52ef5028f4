/*
 * The VMM's own check that the disk, stopped with its VM, reaches nothing of the guest's
 * RAM (stopped_disk.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct stopped_disk {
    /* The IOMMU PD's channel and the disk, as it numbers this PD's devices. */
    unsigned iommu;
    uint32_t device;
    /* Where this PD maps the disk's BAR window, and that window's physical address. */
    uintptr_t regs_vaddr;
    uint64_t window_pa;
    /* The guest's RAM: where it starts (guest-physical, which is the disk's IOVA), and
     * where this PD maps it. */
    uint64_t ram_gpa;
    uintptr_t ram_vaddr;
};

/* Find the disk's virtio common configuration and notification registers through its
 * capabilities (CONFIG_READ). False, said why, if they are not there. */
bool stopped_disk_find(const struct stopped_disk *disk);

/* The disk's virtio device status, read through its registers (0xff when the common
 * configuration was not found). */
uint8_t stopped_disk_status(void);

/* Set the disk's virtio device status to ACKNOWLEDGE (a driver's first step), so that a
 * reset shows: its status reads 0 after one. Returns the status read back. */
uint8_t stopped_disk_mark(void);

/* The disk's PCI Command register (CONFIG_READ). */
uint32_t stopped_disk_command(void);

/* With the disk STOPped: turn its Memory Space and Bus Master on (as a hostile owner
 * could), set up queue 0 in the guest's RAM as a driver would and ring it with a read of
 * the sector at 1 MiB into a buffer the VMM filled, wait up to a second, and say what
 * reached the guest's RAM. True if nothing did: no completion, the buffer and status byte
 * as the VMM left them. The device is reset and its Command cleared afterwards. */
bool stopped_disk_reaches_nothing(void);

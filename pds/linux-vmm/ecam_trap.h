/* The guest's ECAM trapped through libvmm and emulated by pds/vpci (ecam_trap.c). */
#pragma once

#include <stdbool.h>

#include "vpci.h"

/* Trap the guest's ECAM (cfg->ecam_gpa, cfg->ecam_size) and set up its emulation
 * (vpci_init). False (and said why) if either fails: the guest must not then start. */
bool ecam_trap_init(const struct vpci_config *cfg);

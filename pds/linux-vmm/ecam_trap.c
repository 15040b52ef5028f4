/*
 * The guest's ECAM on libvmm: libvmm hands each VM fault in the (unmapped) ECAM range to
 * ecam_fault, which decodes the access from its syndrome with libvmm's helpers and has
 * the shared emulation (pds/vpci) answer it.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <microkit.h>
#include <libvmm/libvmm.h>
#include <sddf/util/printf.h>

#include "ecam_trap.h"
#include "vpci.h"

void vpci_printf(const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    sddf_vprintf(fmt, va);
    va_end(va);
}

static bool ecam_fault(size_t vcpu_id, size_t offset, size_t fsr, seL4_UserContext *regs, void *cookie)
{
    (void)vcpu_id;
    (void)cookie;
    int width = fault_get_width_bytes(fsr);
    if (width != 1 && width != 2 && width != 4) {
        printf("vmm: vpci: a %d-byte access to ECAM offset 0x%lx: not a configuration access\n", width, offset);
        return false;
    }
    if (offset % width) {
        printf("vmm: vpci: a misaligned access to ECAM offset 0x%lx\n", offset);
        return false;
    }
    /* ESR_EL2.ISS of a data abort: ISV (bit 24) says SRT (bits 20:16) names the register. */
    if (!(fsr & (1ul << 24))) {
        printf("vmm: vpci: an ECAM access without a syndrome (ESR 0x%lx)\n", fsr);
        return false;
    }
    size_t rt = (fsr >> 16) & 0x1f;
    if (fault_is_read(fsr)) {
        uint32_t v = 0;
        vpci_access(offset, true, width, &v);
        /* Sign- or zero-extended as the load asked (LDRSB, LDRSH; a W or an X register);
         * to xzr (31) it goes nowhere. */
        if (rt != 31) {
            *decode_rt(rt, regs) = vpci_loaded(v, width, fsr);
        }
    } else {
        uint32_t v = (uint32_t)fault_get_data(regs, fsr);
        vpci_access(offset, false, width, &v);
    }
    return true;
}

bool ecam_trap_init(const struct vpci_config *cfg)
{
    if (!fault_register_vm_exception_handler(cfg->ecam_gpa, cfg->ecam_size, ecam_fault, NULL)) {
        return false;
    }
    return vpci_init(cfg);
}

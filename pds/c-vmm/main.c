/*
 * The VMM of images/vm-passthrough.xml: it runs one guest (pds/vm-guest) in the virtual
 * machine `guest`, to which the edu device 00:02.0 is passed through. It loads the guest
 * into the guest's RAM and starts its vCPU at EL1; the guest drives the device and stops
 * (a fault at an address that is not its memory). The VMM runs it three times:
 *   1. as given: it reports what the guest's DMA reached;
 *   2. after stopping the VM and STOPping its device (the IOMMU PD confirms the device
 *      reaches nothing): the guest, run again, must find its DMA reaching nothing;
 *   3. after RESUME of the device: its DMA reaches the guest's RAM again.
 * Then it crashes on purpose. As the device's owner it is the IOMMU PD's client and
 * child: the device's faults come to it in its fault ring, and its crash takes the
 * device's access away.
 *
 * The guest's PCI configuration space is virtual: its ECAM is mapped nowhere, so each
 * access is a VM fault, which ecam_fault decodes from the fault's syndrome and the shared
 * emulation (pds/vpci, as pds/linux-vmm's) answers: one function, the edu, whose
 * registers go to the IOMMU PD as CONFIG_READ/CONFIG_WRITE, its BARs virtual.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <microkit.h>

#include "iommu_client.h"
#include "pd_format.h"
#include "pd_print.h"
#include "vpci.h"

#include "../vm-guest/mailbox.h"

#define IOMMU 0
#define GUEST 0
/* The passed-through device, as the IOMMU PD numbers the VMM's devices. */
#define DEVICE 0

/* The guest's ECAM (bus 0 only), mapped nowhere in the VM. */
#define GUEST_ECAM_GPA 0x3f000000ul
#define GUEST_ECAM_SIZE 0x100000ul
/* The edu's BAR window (its io_address_space's bar=, where the IOMMU PD places BAR0) and
 * where the VM maps it (vm-passthrough.xml): the guest reads its BAR there. */
#define BAR_WINDOW_PA 0x10000000ul
#define BAR_WINDOW_GPA 0x18000000ul
#define BAR_WINDOW_SIZE 0x100000ul

/* Which run of the guest this is (see the top). */
enum run { AS_GIVEN, DEVICE_STOPPED, DEVICE_RESUMED };
static enum run run;

uintptr_t guest_ram_vaddr __attribute__((section(".data")));
uintptr_t guest_ram_paddr __attribute__((section(".data")));
uintptr_t fault_ring __attribute__((section(".data")));

/* The guest's image, built from pds/vm-guest and linked at GUEST_RAM_GPA. */
extern const uint8_t guest_image[], guest_image_end[];
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global guest_image\n"
        "guest_image:\n"
        ".incbin \"vm-guest.bin\"\n"
        ".global guest_image_end\n"
        "guest_image_end:\n"
        ".previous\n");

static uint64_t next_fault;

/* The mailbox at the top of guest RAM, as the VMM maps it. */
static volatile struct mailbox *mailbox(void)
{
    return (volatile struct mailbox *)(guest_ram_vaddr + (MAILBOX_GPA - GUEST_RAM_GPA));
}

/* The vCPU's SCTLR_EL1 as seL4 first gave it (MMU off): a guest started again starts as
 * from reset, not with the page tables its last run turned on. */
static seL4_Word reset_sctlr;

/* Clear what the guest reports and start its vCPU at its entry, EL1h with interrupts
 * masked: the guest is a kernel of its own. */
static void start_guest(void)
{
    microkit_vcpu_arm_write_reg(GUEST, seL4_VCPUReg_SCTLR, reset_sctlr);
    volatile struct mailbox *mb = mailbox();
    mb->ram_paddr = guest_ram_paddr;
    /* The last run ends on an ECAM access this VMM must refuse (see ecam_fault). */
    mb->end_with_pair_load = run == DEVICE_RESUMED;
    mb->sctlr = 0;
    mb->exception_esr = 0;
    mb->exception_far = 0;
    mb->exception_elr = 0;
    mb->vendor_device = 0;
    mb->other_function = 0;
    mb->bar0 = 0;
    mb->bar0_size = 0;
    mb->moved_bar0 = 0;
    mb->command = 0;
    mb->ident = 0;
    mb->reached_ram = 0;
    mb->host_paddr_blocked = 0;
    mb->done = 0;
    seL4_UserContext ctxt = {0};
    ctxt.pc = GUEST_RAM_GPA;
    ctxt.spsr = 0x3c5;
    seL4_Error err = seL4_TCB_WriteRegisters(BASE_VM_TCB_CAP + GUEST, seL4_True, 0, 3 /* pc, sp, spsr */, &ctxt);
    if (err != seL4_NoError) {
        microkit_dbg_puts("vmm: could not start the guest\n");
    }
}

void vpci_printf(const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    pd_vprintf(fmt, va);
    va_end(va);
}

/* Where seL4_UserContext keeps x0..x30 (its order is not the registers' numbering), in
 * words: the register an access's syndrome names (SRT) is found through this. */
#define X(n) (offsetof(seL4_UserContext, x##n) / sizeof(seL4_Word))
static const uint8_t xreg[31] = { X(0),  X(1),  X(2),  X(3),  X(4),  X(5),  X(6),  X(7),  X(8),  X(9),  X(10),
                                  X(11), X(12), X(13), X(14), X(15), X(16), X(17), X(18), X(19), X(20), X(21),
                                  X(22), X(23), X(24), X(25), X(26), X(27), X(28), X(29), X(30) };
#undef X

/* ESR_EL2's ISS of a data abort (Arm ARM D17.2.40, ISS encoding for an exception from a
 * Data Abort): ISV says the rest describes the instruction, SAS its size, SSE whether a
 * load sign-extends, SRT its register, SF whether that register is 64-bit, WnR a write. */
#define ESR_ISV (1ul << 24)
#define ESR_SAS(esr) (((esr) >> 22) & 3)
#define ESR_SRT(esr) (((esr) >> 16) & 0x1f)
#define ESR_WNR (1ul << 6)

/* The guest's access at `offset` in its ECAM, from the fault's syndrome `esr`: emulated
 * by vpci_access, a load's value put in its register, and the vCPU moved past the
 * instruction. False (and said why) if the access cannot be a configuration access: the
 * guest is then not resumed. */
static seL4_Bool ecam_fault(uint64_t offset, uint64_t esr, seL4_Bool prefetch)
{
    if (prefetch) {
        vpci_printf("vmm: vpci: the guest fetched an instruction from its ECAM (offset 0x%lx); stopped\n", offset);
        return seL4_False;
    }
    if (!(esr & ESR_ISV)) {
        /* A load or store pair, a writeback or a SIMD access: no syndrome tells which
         * register, and this VMM decodes no instructions. */
        vpci_printf("vmm: vpci: the guest's access to ECAM offset 0x%lx has no syndrome (ESR 0x%lx, ISV 0): not "
                    "emulated; the guest is stopped\n",
                    offset, esr);
        return seL4_False;
    }
    int width = 1 << ESR_SAS(esr);
    if (width == 8 || offset % width) {
        vpci_printf("vmm: vpci: a %d-byte access to ECAM offset 0x%lx is not a configuration access; the guest "
                    "is stopped\n",
                    width, offset);
        return seL4_False;
    }
    seL4_UserContext ctx;
    seL4_Word *regs = (seL4_Word *)&ctx;
    const seL4_Word count = sizeof ctx / sizeof(seL4_Word);
    if (seL4_TCB_ReadRegisters(BASE_VM_TCB_CAP + GUEST, seL4_False, 0, count, &ctx) != seL4_NoError) {
        vpci_printf("vmm: vpci: could not read the guest's registers\n");
        return seL4_False;
    }
    unsigned rt = ESR_SRT(esr);
    if (esr & ESR_WNR) {
        /* Register 31 is the zero register here. */
        uint32_t v = rt == 31 ? 0 : (uint32_t)regs[xreg[rt]];
        vpci_access(offset, false, width, &v);
    } else {
        uint32_t v = 0;
        vpci_access(offset, true, width, &v);
        uint64_t value = vpci_loaded(v, width, esr);
        if (rt != 31) {
            regs[xreg[rt]] = value;
        }
    }
    ctx.pc += 4;
    if (seL4_TCB_WriteRegisters(BASE_VM_TCB_CAP + GUEST, seL4_False, 0, count, &ctx) != seL4_NoError) {
        vpci_printf("vmm: vpci: could not write the guest's registers\n");
        return seL4_False;
    }
    return seL4_True;
}

void init(void)
{
    struct vpci_config pci = {
        .iommu = IOMMU,
        .device = DEVICE,
        .ecam_gpa = GUEST_ECAM_GPA,
        .ecam_size = GUEST_ECAM_SIZE,
        .bar_window_pa = BAR_WINDOW_PA,
        .bar_window_gpa = BAR_WINDOW_GPA,
        .bar_window_size = BAR_WINDOW_SIZE,
    };
    if (!vpci_init(&pci)) {
        microkit_dbg_puts("vmm: the edu cannot be passed through; the guest is not started\n");
        return;
    }
    volatile uint8_t *ram = (volatile uint8_t *)guest_ram_vaddr;
    uint64_t n = (uint64_t)(guest_image_end - guest_image);
    if (n > GUEST_IMAGE_MAX) {
        microkit_dbg_puts("vmm: the guest's image is larger than its place in guest RAM; not started\n");
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        ram[i] = guest_image[i];
    }
    reset_sctlr = microkit_vcpu_arm_read_reg(GUEST, seL4_VCPUReg_SCTLR);
    start_guest();
    microkit_dbg_puts("vmm: guest loaded at guest-physical 0x20000000, started\n");
}

/* After the IOMMU PD answered `err` to STOP or RESUME: say so, and on success start the
 * guest's next run. The vCPU stays stopped either way until then (no fault reply). */
static seL4_Bool run_again(uint64_t err, const char *refused, const char *done, enum run next)
{
    if (err != 0) {
        microkit_dbg_puts(refused);
        put_hex(err);
        microkit_dbg_puts("\n");
        return seL4_False;
    }
    /* The guest's next run sees configuration space afresh, the device decoding its BARs
     * (the IOMMU PD keeps its Memory Space on where it placed them, through a STOP; read back
     * here all the same). After RESUME, a device that cannot decode is stopped again: the
     * guest is not started. */
    if (!(next == DEVICE_RESUMED ? vpci_resumed() : vpci_restart())) {
        return seL4_False;
    }
    microkit_dbg_puts(done);
    run = next;
    start_guest();
    return seL4_False;
}

static void report(void)
{
    volatile struct mailbox *mb = mailbox();
    if (!mb->done) {
        microkit_dbg_puts("vmm: the guest stopped before it finished; its exception: ESR ");
        put_hex(mb->exception_esr);
        microkit_dbg_puts(" FAR ");
        put_hex(mb->exception_far);
        microkit_dbg_puts(" ELR ");
        put_hex(mb->exception_elr);
        microkit_dbg_puts("\n");
        return;
    }
    microkit_dbg_puts((mb->sctlr & 1) ? "vmm: the guest runs at EL1 with its own page tables (SCTLR_EL1 "
                                      : "vmm: the guest's MMU is OFF (SCTLR_EL1 ");
    put_hex(mb->sctlr);
    microkit_dbg_puts(")\n");
    vpci_printf("vmm: the guest found device 0x%lx through its virtual configuration space, nothing at 00:01.0 "
                "(0x%lx), and its BAR0 at guest-physical 0x%lx (0x%lx bytes), where the edu's ident reads 0x%lx\n",
                mb->vendor_device, mb->other_function, mb->bar0, mb->bar0_size, mb->ident);
    vpci_printf("vmm: the guest's move of BAR0 read back 0x%lx, and its Command reads 0x%lx\n", mb->moved_bar0,
                mb->command);
    struct vpci_stats st = vpci_stats();
    vpci_printf("vmm: vpci: the guest's %u configuration reads and %u writes emulated: %u forwarded to the IOMMU PD "
                "(%u refused), %u BAR writes kept here, %u accesses to other functions\n",
                st.reads, st.writes, st.forwarded, st.refused, st.bar_writes, st.other_functions);
    microkit_dbg_puts(mb->reached_ram ? "vmm: guest DMA by guest-physical address to and from its RAM: bytes right\n"
                                      : "vmm: guest DMA by guest-physical address FAILED\n");
    microkit_dbg_puts(mb->host_paddr_blocked ? "vmm: guest DMA at its RAM's host-physical address: blocked\n"
                                             : "vmm: guest DMA at its RAM's host-physical address LANDED, or the device never finished it\n");
}

seL4_Bool fault(microkit_child child, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo)
{
    /* Read before any call to the IOMMU PD overwrites the message registers. */
    uint64_t addr = seL4_GetMR(seL4_VMFault_Addr);
    if (child == GUEST && microkit_msginfo_get_label(msginfo) == seL4_Fault_VMFault && addr >= GUEST_ECAM_GPA &&
        addr - GUEST_ECAM_GPA < GUEST_ECAM_SIZE) {
        if (ecam_fault(addr - GUEST_ECAM_GPA, seL4_GetMR(seL4_VMFault_FSR), seL4_GetMR(seL4_VMFault_PrefetchFault))) {
            *reply_msginfo = microkit_msginfo_new(0, 0);
            return seL4_True;
        }
        /* Refused: the guest stops here, as it does at its end. */
    }
    microkit_dbg_puts(child == GUEST ? "vmm: the guest stopped at guest-physical " : "vmm: an unknown vCPU faulted at ");
    put_hex(addr);
    microkit_dbg_puts("\n");
    microkit_vcpu_stop(child);
    volatile struct mailbox *mb = mailbox();
    switch (run) {
    case AS_GIVEN:
        report();
        /* The VM is stopped: before its memory can be anything else's, its device must
         * reach none of it. STOP answers once the IOMMU confirmed. */
        return run_again(iommu_stop(IOMMU, DEVICE, NULL), "vmm: STOP of the guest's device refused: error ",
                         "vmm: VM stopped, and its device with it (confirmed); the guest runs again\n", DEVICE_STOPPED);
    case DEVICE_STOPPED:
        microkit_dbg_puts(mb->done && !mb->reached_ram
                              ? "vmm: with its device stopped, the guest's DMA reached nothing of its RAM\n"
                              : "vmm: with its device stopped, the guest's DMA REACHED its RAM (or it did not finish)\n");
        return run_again(iommu_resume(IOMMU, DEVICE), "vmm: RESUME of the guest's device refused: error ",
                         "vmm: device resumed; the guest runs a third time\n", DEVICE_RESUMED);
    case DEVICE_RESUMED:
        microkit_dbg_puts(mb->done && mb->reached_ram
                              ? "vmm: after RESUME, the guest's DMA reaches its RAM again: bytes right\n"
                              : "vmm: after RESUME, the guest's DMA FAILED\n");
        break;
    }
    /* The VMM is done; it now crashes on purpose, as a buggy VMM would with its guest's
     * device still set up: the IOMMU PD, its parent, must take the device's access away
     * (confirmed) before anything else happens. */
    microkit_dbg_puts("vmm: now crashing, with the guest's device still mapped\n");
    *(volatile uint64_t *)0xdead0000ul = 0;
    return seL4_False;
}

void notified(microkit_channel ch)
{
    if (ch != IOMMU) {
        return;
    }
    print_faults("vmm", fault_ring, IOMMU, &next_fault);
}

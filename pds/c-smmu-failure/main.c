/*
 * The SMMU fails while serving, on QEMU's real SMMU: images/smmu-failure.xml builds the
 * IOMMU PD with `inject-unanswered`, so from this PD's first UNMAP on the SMMU driver rings
 * no doorbell (SMMU_CMDQ_PROD is not written again) and the SMMU consumes no command: to
 * the driver, an SMMU that stopped answering. The UNMAP's CMD_SYNC times out, the device's
 * block waits on a second one, and the driver fails the SMMU closed (every STE aborting,
 * GBPA.ABORT, SMMUEN = 0).
 *
 * This PD shows its device's DMA reaching the page before (through the description's
 * iomap and through a mapping of its own, which QEMU's IOTLB then holds), and refused
 * after: the page's bytes are unchanged where a write would land. Neither removal was
 * ever confirmed, so only the driver's failing closed stops these writes.
 *
 * Built with IOMMU_PANIC (c-iommu-panic.elf, images/iommu-panic.xml), the failure is the
 * IOMMU PD's own panic instead, which its `inject-panic` build makes at a client's
 * notification: this PD notifies it where it would UNMAP, and the IOMMU PD's panic hook
 * must fail the SMMU closed and tell it, its mapping still in place. Built with
 * IOMMU_PANIC_IN_CALL (c-iommu-panic-call.elf, images/iommu-panic-call.xml), the IOMMU PD
 * panics inside this PD's UNMAP call instead (`inject-panic-in-call`): its panic hook must
 * also answer the call (SERVICE_FAILED), or this PD would stay blocked in it for good.
 */
#include <stdint.h>

#include <microkit.h>

#include "edu.h"
#include "edu_on.h"
#include "failure_test_iommu.h"
#include "iommu_client.h"
#include "pd_print.h"

#define IOMMU FAILURE_TEST_IOMMU_CHANNEL
#define MY_DEVICE FAILURE_TEST_DEV_QEMU_EDU

/* The description's iomap of the page. */
#define IOVA 0x100000u

#if defined(IOMMU_PANIC_IN_CALL)
#define WHO "iommu-panic-call"
#elif defined(IOMMU_PANIC)
#define WHO "iommu-panic"
#else
#define WHO "smmu-failure"
#endif

uintptr_t edu_mmio_window_vaddr __attribute__((section(".data")));
uintptr_t dma_buffer_vaddr __attribute__((section(".data")));
uintptr_t fault_ring __attribute__((section(".data")));

static void say(const char *what)
{
    microkit_dbg_puts(WHO ": ");
    microkit_dbg_puts(what);
    microkit_dbg_puts("\n");
}

/* The device writes its buffer (which holds neither byte) at `iova`, where `watch` lies:
 * "<what> is refused" if `watch` still holds what it was filled with once the device
 * finished the write; an unchanged page the device never wrote to shows nothing. */
static void write_after(uintptr_t bar, uint64_t iova, volatile uint8_t *watch, const char *what)
{
    static const char *const said[] = {
        [EDU_WRITE_LANDED] = " LANDED: the page was written\n",
        [EDU_WRITE_MISSED] = " is refused: the page is unchanged\n",
        [EDU_WRITE_NOT_FINISHED] = ": the device DID NOT FINISH its write, so its page shows nothing\n",
    };
    microkit_dbg_puts(WHO ": after the failure, DMA at ");
    microkit_dbg_puts(what);
    microkit_dbg_puts(said[edu_write_outcome(bar, iova, watch, 0xa5)]);
}

void init(void)
{
    /* Its BAR0 (which the description maps at edu_mmio_window) checked, then on. */
    if (!edu_switch_on(WHO, IOMMU, MY_DEVICE)) {
        return;
    }
    uintptr_t bar = edu_mmio_window_vaddr;
    volatile uint8_t *buf = (volatile uint8_t *)dma_buffer_vaddr;

    /* Before: the device runs, and reaches the page both ways. */
    if (!edu_round_trip(bar, buf, IOVA, 0x5a)) {
        say("before the failure, DMA at the iomap's IOVA FAILED");
        return;
    }
    say("before the failure, DMA at the iomap's IOVA reaches the page");
    uint64_t iova = 0;
    uint64_t err =
        iommu_map(IOMMU, FAILURE_TEST_CAP_EDU_PAGE, MY_DEVICE, 0, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    if (err) {
        put_result(WHO, "before the failure, MAP", err);
        return;
    }
    if (!edu_round_trip(bar, buf, iova, 0x6b)) {
        say("before the failure, DMA at its own mapping's IOVA FAILED");
        return;
    }
    say("before the failure, DMA at its own mapping's IOVA reaches the page");

#if defined(IOMMU_PANIC_IN_CALL)
    /* The injected failure: the IOMMU PD panics in this call, before it unmaps anything;
     * its panic hook answers it, and this PD goes on. */
    say("calls UNMAP, in which the IOMMU PD panics");
    put_result(WHO, "UNMAP in which the IOMMU PD panicked", iommu_unmap(IOMMU, MY_DEVICE, &iova, 1));
    say("went on after its call was answered");
#elif defined(IOMMU_PANIC)
    /* The injected failure: the IOMMU PD panics at this notification (above this PD, it
     * runs before the notify returns), its mapping of the page still in place. */
    say("notifies the IOMMU PD, which panics");
    microkit_notify(IOMMU);
#else
    /* The injected failure: the UNMAP's invalidation never completes. */
    put_result(WHO, "UNMAP with the SMMU not answering", iommu_unmap(IOMMU, MY_DEVICE, &iova, 1));
#endif
    const volatile struct iommu_fault_ring *ring = (const volatile struct iommu_fault_ring *)fault_ring;
    say(!iommu_service_failed(ring)            ? "NOT TOLD: its fault ring does not say the IOMMU service failed"
        : iommu_service_failed_dma_stopped(ring) ? "told: its fault ring says the IOMMU service failed, every device's DMA aborting"
                                                 : "told: its fault ring says the IOMMU service failed, DMA NOT KNOWN TO BE STOPPED");

    /* After: the device's buffer holds 0x6b; a write that landed would put it in the page. */
    write_after(bar, IOVA + 0x800, buf + 0x800, "the iomap's IOVA");
#if defined(IOMMU_PANIC) || defined(IOMMU_PANIC_IN_CALL)
    /* No later call: the IOMMU PD is gone, and a call to it would never return. */
    write_after(bar, iova + 0x800, buf + 0x800, "its own mapping's IOVA");
#else
    write_after(bar, iova + 0x800, buf + 0x800, "the unconfirmed unmap's IOVA");
    uint32_t bar0 = 0;
    put_result(WHO, "a later call", iommu_config_read(IOMMU, MY_DEVICE, 0x10, 4, &bar0));
#endif
}

void notified(microkit_channel ch)
{
    if (ch == IOMMU && iommu_service_failed((const volatile struct iommu_fault_ring *)fault_ring)) {
        say("notified by the IOMMU PD: the IOMMU service failed");
    }
}

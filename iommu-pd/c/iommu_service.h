/* Generated from the Rust declaration of the IOMMU service's protocol (iommu-pd/protocol)
 * by `UPDATE_C_HEADER=1 cargo test -p iommu-protocol --test c_header`; do not edit. */
#ifndef IOMMU_SERVICE_H
#define IOMMU_SERVICE_H

#include <stddef.h>
#include <stdint.h>

/* Request labels. */
#define IOMMU_OP_MAP 1
#define IOMMU_OP_UNMAP 2
#define IOMMU_OP_GRANT 3
#define IOMMU_OP_REVOKE 4
#define IOMMU_OP_ACK_FAULTS 5
#define IOMMU_OP_RESUME 6
#define IOMMU_OP_QUERY 7
#define IOMMU_OP_QUERY_MAPPING 8
#define IOMMU_OP_RELEASE 9
#define IOMMU_OP_STOP 10
#define IOMMU_OP_CONFIG_READ 11
#define IOMMU_OP_CONFIG_WRITE 12

/* Reply labels: 0 is success. */
/* The label is not an opcode. */
#define IOMMU_ERR_UNKNOWN_OP 1
/* Too few message registers. */
#define IOMMU_ERR_TRUNCATED 2
/* A field is out of its range. */
#define IOMMU_ERR_MALFORMED 3
/* The handle names no capability of the caller. */
#define IOMMU_ERR_BAD_HANDLE 4
/* The device is not the caller's, or the capability does not allow it. */
#define IOMMU_ERR_BAD_DEVICE 5
/* The capability does not grant these rights. */
#define IOMMU_ERR_NO_RIGHTS 6
/* The range is not page aligned, wraps, or leaves the capability. */
#define IOMMU_ERR_OUT_OF_RANGE 7
/* The IOVA range overlaps an existing mapping. */
#define IOMMU_ERR_OVERLAP 8
/* The range to unmap is not exactly a set of the caller's mappings. */
#define IOMMU_ERR_NOT_MAPPED 9
/* The caller's quota of mappings is used up. */
#define IOMMU_ERR_QUOTA_MAPPINGS 10
/* The service's capability table is full. */
#define IOMMU_ERR_NO_CAPABILITY_SLOT 11
/* The target client does not exist. */
#define IOMMU_ERR_BAD_CLIENT 12
/* The device is quarantined. */
#define IOMMU_ERR_QUARANTINED 13
/* The policy does not allow this. Resume not permitted, a grant to a client the description
 * does not let the capability go to, or for a device it keeps the capability from, revoke of a
 * capability the caller did not grant, release of a capability from the description. */
#define IOMMU_ERR_DENIED 14
/* The IOMMU failed or did not confirm in time. A removal of access that was not confirmed stays
 * pending and the device is blocked until it is retried and confirmed; anything else asked for
 * did not happen. */
#define IOMMU_ERR_HARDWARE 15
/* No IOVA space left for "choose one". */
#define IOMMU_ERR_NO_IOVA 16
/* The caller's quota of mapped pages is used up. */
#define IOMMU_ERR_QUOTA_PAGES 17
/* The service's mapping table is full. */
#define IOMMU_ERR_NO_MAPPING_SLOT 18
/* The caller's (or the receiver's) handle table is full. */
#define IOMMU_ERR_NO_HANDLE_SLOT 19
/* The device is blocked: the IOMMU did not confirm a removal of access. RESUME retries the
 * removal and, once it is confirmed, lets the device run again. */
#define IOMMU_ERR_REMOVAL_PENDING 20
/* The caller's quota of grants (made and not yet revoked or released) is used up. */
#define IOMMU_ERR_QUOTA_GRANTS 21
/* The device was stopped (STOP); RESUME starts it again. */
#define IOMMU_ERR_STOPPED 22
/* The IOMMU PD is not serving. It could not start (the SMMU was refused, or its devices or the
 * policy could not be set up; its log says why); it made every device's DMA abort instead, and
 * refuses every request. */
#define IOMMU_ERR_UNAVAILABLE 23
/* The configuration-space write is not a driver's to make; nothing was written. The registers
 * (or bits) refused: BARs, expansion ROM, a bridge's header (bus numbers, windows), capability
 * headers and pointers, extended configuration space (ACS among it), and the rest of the
 * standard header but Command. */
#define IOMMU_ERR_CONFIG_DENIED 24
/* The device has no configuration space this IOMMU PD owns. It is not a PCI function there (the
 * description gives it no ECAM, or gives the device no PCI address). */
#define IOMMU_ERR_NO_CONFIG_SPACE 25
/* The device is missing. Nothing answers at the PCI address the description gives it, or the
 * bridge above it was absent or not what the description declares and was left closed; the
 * IOMMU PD named it at boot (`iommu: pci: NAME MISSING`). Or it stopped answering since
 * (`stop::FLR_LOST`), and does not answer yet, or came back with BARs that cannot be put back
 * where the description places them. */
#define IOMMU_ERR_DEVICE_MISSING 26
/* The device's function owes a reset (STOP's `RESET_OWED`) that its client may not have yet:
 * nothing was done, the device stays stopped; RESUME again later (within a second keeps its
 * turn). Function resets are rationed to a tenth of the time for all clients together (after a
 * reset that took t, the next, anyone's, waits 9t, at least 900 ms), since each holds the IOMMU
 * PD; the turns go first to the client that had one least recently. */
#define IOMMU_ERR_RESET_RATIONED 27
/* The device was quarantined by a fault storm and was last resumed from one less than a storm
 * window ago: nothing was done, it stays quarantined; RESUME again later. Each storm may
 * overflow the IOMMU's event queue, which every client shares (each then counts a record lost),
 * so a device is resumed from a storm once per window. */
#define IOMMU_ERR_RESUME_RATIONED 28
/* The IOMMU service failed while serving this call, and serves no more. Its fault ring's
 * `failed` word says whether every device's DMA now aborts; no later call is answered. The
 * IOMMU PD panicked in the call and answered it from its panic hook, after failing the IOMMU
 * closed and telling every client. */
#define IOMMU_ERR_SERVICE_FAILED 29
/* The newest error code: iommu_resume sends it, to say that its caller decodes every code up to
 * it. */
#define IOMMU_ERR_NEWEST IOMMU_ERR_SERVICE_FAILED

/* What a reply label means, for a log: the error code's name and what it means (the first
 * sentence of its description above), "ok" for 0, "not an IOMMU error code" for any other. */
static inline const char *iommu_strerror(uint64_t err)
{
    switch (err) {
    case 0:
        return "ok";
    case IOMMU_ERR_UNKNOWN_OP:
        return "UNKNOWN_OP: the label is not an opcode";
    case IOMMU_ERR_TRUNCATED:
        return "TRUNCATED: too few message registers";
    case IOMMU_ERR_MALFORMED:
        return "MALFORMED: a field is out of its range";
    case IOMMU_ERR_BAD_HANDLE:
        return "BAD_HANDLE: the handle names no capability of the caller";
    case IOMMU_ERR_BAD_DEVICE:
        return "BAD_DEVICE: the device is not the caller's, or the capability does not allow it";
    case IOMMU_ERR_NO_RIGHTS:
        return "NO_RIGHTS: the capability does not grant these rights";
    case IOMMU_ERR_OUT_OF_RANGE:
        return "OUT_OF_RANGE: the range is not page aligned, wraps, or leaves the capability";
    case IOMMU_ERR_OVERLAP:
        return "OVERLAP: the IOVA range overlaps an existing mapping";
    case IOMMU_ERR_NOT_MAPPED:
        return "NOT_MAPPED: the range to unmap is not exactly a set of the caller's mappings";
    case IOMMU_ERR_QUOTA_MAPPINGS:
        return "QUOTA_MAPPINGS: the caller's quota of mappings is used up";
    case IOMMU_ERR_NO_CAPABILITY_SLOT:
        return "NO_CAPABILITY_SLOT: the service's capability table is full";
    case IOMMU_ERR_BAD_CLIENT:
        return "BAD_CLIENT: the target client does not exist";
    case IOMMU_ERR_QUARANTINED:
        return "QUARANTINED: the device is quarantined";
    case IOMMU_ERR_DENIED:
        return "DENIED: the policy does not allow this";
    case IOMMU_ERR_HARDWARE:
        return "HARDWARE: the IOMMU failed or did not confirm in time";
    case IOMMU_ERR_NO_IOVA:
        return "NO_IOVA: no IOVA space left for \"choose one\"";
    case IOMMU_ERR_QUOTA_PAGES:
        return "QUOTA_PAGES: the caller's quota of mapped pages is used up";
    case IOMMU_ERR_NO_MAPPING_SLOT:
        return "NO_MAPPING_SLOT: the service's mapping table is full";
    case IOMMU_ERR_NO_HANDLE_SLOT:
        return "NO_HANDLE_SLOT: the caller's (or the receiver's) handle table is full";
    case IOMMU_ERR_REMOVAL_PENDING:
        return "REMOVAL_PENDING: the device is blocked: the IOMMU did not confirm a removal of access";
    case IOMMU_ERR_QUOTA_GRANTS:
        return "QUOTA_GRANTS: the caller's quota of grants (made and not yet revoked or released) is used up";
    case IOMMU_ERR_STOPPED:
        return "STOPPED: the device was stopped (STOP); RESUME starts it again";
    case IOMMU_ERR_UNAVAILABLE:
        return "UNAVAILABLE: the IOMMU PD is not serving";
    case IOMMU_ERR_CONFIG_DENIED:
        return "CONFIG_DENIED: the configuration-space write is not a driver's to make; nothing was written";
    case IOMMU_ERR_NO_CONFIG_SPACE:
        return "NO_CONFIG_SPACE: the device has no configuration space this IOMMU PD owns";
    case IOMMU_ERR_DEVICE_MISSING:
        return "DEVICE_MISSING: the device is missing";
    case IOMMU_ERR_RESET_RATIONED:
        return "RESET_RATIONED: the device's function owes a reset (STOP's `RESET_OWED`) that its client may not have yet: nothing was done, the device stays stopped; RESUME again later (within a second keeps its turn)";
    case IOMMU_ERR_RESUME_RATIONED:
        return "RESUME_RATIONED: the device was quarantined by a fault storm and was last resumed from one less than a storm window ago: nothing was done, it stays quarantined; RESUME again later";
    case IOMMU_ERR_SERVICE_FAILED:
        return "SERVICE_FAILED: the IOMMU service failed while serving this call, and serves no more";
    default:
        return "not an IOMMU error code";
    }
}

/* Message registers. */
#define IOMMU_MAX_UNMAP_RANGES 64
#define IOMMU_MAP_HANDLE_MASK 0xffffff
#define IOMMU_MAX_MRS 66
#define IOMMU_MAX_REPLY_VALUES 10
#define IOMMU_IOVA_ANY 0xffffffffffffffffULL
#define IOMMU_RIGHTS_READ 1
#define IOMMU_RIGHTS_WRITE 2
#define IOMMU_RIGHTS_READ_WRITE 3
#define IOMMU_CONFIG_SPACE 4096
#define IOMMU_CONFIG_WIDTH_SHIFT 16

/* QUERY's reply. */
#define IOMMU_QUERY_MAPPINGS 0
#define IOMMU_QUERY_MAPPING_QUOTA 1
#define IOMMU_QUERY_PAGES 2
#define IOMMU_QUERY_PAGE_QUOTA 3
#define IOMMU_QUERY_FAULTS_RECORDED 4
#define IOMMU_QUERY_FAULTS_DROPPED 5
#define IOMMU_QUERY_REMOVALS_PENDING 6
#define IOMMU_QUERY_GRANTS 7
#define IOMMU_QUERY_GRANT_QUOTA 8
#define IOMMU_QUERY_VALUES 9

/* QUERY_MAPPING's reply. */
#define IOMMU_QUERY_MAPPING_DEVICE 0
#define IOMMU_QUERY_MAPPING_IOVA 1
#define IOMMU_QUERY_MAPPING_LENGTH 2
#define IOMMU_QUERY_MAPPING_RIGHTS 3
#define IOMMU_QUERY_MAPPING_REGION 4
#define IOMMU_QUERY_MAPPING_OFFSET 5
#define IOMMU_QUERY_MAPPING_PENDING 6
#define IOMMU_QUERY_MAPPING_VALUES 7

/* ACK_FAULTS's reply: the record acknowledged, as it stands once acknowledged. */
#define IOMMU_ACK_FAULTS_SEQ 0
#define IOMMU_ACK_FAULTS_REPEATS 1
#define IOMMU_ACK_FAULTS_IOVA_LAST 2
#define IOMMU_ACK_FAULTS_VALUES 3

/* STOP's reply: what was done to the device's PCI function. */
/* Bus Master and I/O Space turned off, and MSI and MSI-X disabled, read back: the function
 * masters nothing, and sends no interrupt message its last driver set up. (Its INTx is disabled
 * too, where it has one; Memory Space stays on where the owner placed its BARs: its driver maps
 * them.) */
#define IOMMU_STOP_FUNCTION_OFF 0x1
/* Reset by a Function Level Reset (PCIe Base 4.0, 6.6.2), which the function advertises (Device
 * Capabilities, bit 28), followed by the spec's 100 ms wait; the function answered again
 * afterwards. */
#define IOMMU_STOP_FLR 0x2
/* What the owner placed (BARs, expansion ROM BAR, Interrupt Line) reads back as it was before
 * the stop, written again after an FLR cleared it. */
#define IOMMU_STOP_RESTORED 0x4
/* The function still had Transactions Pending (Device Status, bit 5) after 100 ms with Bus
 * Master off; reset anyway, as Linux does (its DMA is blocked at the IOMMU). */
#define IOMMU_STOP_PENDING 0x8
/* Reset (by FLR, or D3hot and back), and the function did not answer within a second
 * afterwards. Until it answers again, every configuration call and RESUME for it answers
 * `DeviceMissing` (the device stays stopped); the first that finds it answering puts its BARs
 * back where the description places them (it came back at its reset values), with Bus Master
 * and MSI off, decoding only there, before doing anything else. */
#define IOMMU_STOP_FLR_LOST 0x10
/* The function has a reset (FLR, or D3hot and back) and was not reset now: resets are rationed
 * (each holds the IOMMU PD, and everything of lower priority, for 20 ms to 100 ms or more), so
 * it is reset when RESUME asks for it to run again. Bus Master, I/O Space and INTx are off, and
 * its DMA blocked, all the same. */
#define IOMMU_STOP_RESET_OWED 0x20
/* Reset by a D3hot-to-D0 transition (PCI Bus Power Management 1.2: PMCSR's No_Soft_Reset
 * clear), the function having no FLR, as Linux's `pci_pm_reset`; the function answered again
 * afterwards. */
#define IOMMU_STOP_PM_RESET 0x40
/* A reset (FLR, or D3hot and back) was done and the function answered, but its BARs still read
 * what the owner placed, which any reset returns to 0: it did not reset (a PMCSR No_Soft_Reset
 * that lies, as Linux's `quirk_no_pm_reset` knows of some GPUs, or an FLR it ignores), and
 * keeps what its last driver left. Rationed as a reset is. Told only of a function with a
 * placed BAR (one without shows nothing). */
#define IOMMU_STOP_RESET_IGNORED 0x80

/* The fault ring: one page the IOMMU PD writes and this PD maps read-only. */
#define IOMMU_FAULT_RING 32

struct iommu_fault_record {
    /* Sequence number, from 0, per client. */
    uint64_t seq;
    /* The device (index in the system description). */
    uint32_t device;
    /* Its StreamID. */
    uint32_t stream;
    /* The faulting bus address. */
    uint64_t iova;
    /* What went wrong: one of the IOMMU_FAULT_KIND_* values, the SMMUv3 event number (IHI 0070 7.3)
     * of the fault whichever SMMU the board has, 0 for one with no such number. */
    uint32_t kind;
    /* 1 if the device tried to write, 0 if it read. */
    uint32_t write;
    /* The region the address falls in (or is next to), by its index among the memory regions
     * devices may reach (those a capability or an iomap names, in the description's order:
     * `iommu-sdf report` lists them), or IOMMU_FAULT_NO_REGION if none. */
    uint32_t region;
    /* IOMMU_FAULT_INSIDE if the address is inside one of the device's mappings (it lacked the
     * rights), IOMMU_FAULT_NEAR if it is next to one (within a page: past an end of a buffer).
     * Meaningless when `region` is IOMMU_FAULT_NO_REGION. */
    uint32_t near;
    /* Offset into the region (of the address, or of the nearest mapped byte). */
    uint64_t offset;
    /* 1 if this fault quarantined the device. */
    uint32_t quarantined;
    /* Records dropped for lack of room before this one: in this ring, or lost by the IOMMU's own
     * event queue (counted one per overflow in every client's ring, whose records were lost being
     * unknown). */
    uint32_t dropped_before;
    /* Further faults folded into this record: same device, kind and direction, at addresses up to
     * `iova_last` (a DMA burst faults once per bus transaction). */
    uint32_t repeats;
    /* Highest faulting address folded into this record. */
    uint64_t iova_last;
};

/* A fault record's `device`, `region` and `near`. */
/* `device` of a record that concerns no one device (one of kind SERVICE_FAILED). */
#define IOMMU_FAULT_NO_DEVICE 0xffffffffu
/* `region` when the address is in, or next to, none of the device's mappings. */
#define IOMMU_FAULT_NO_REGION 0xffffffffu
/* `near`: the address is inside a mapping; `offset` is its offset into the region. */
#define IOMMU_FAULT_INSIDE 0
/* `near`: the address is next to a mapping, within a page of it; `offset` is that of the
 * mapping's nearest byte. */
#define IOMMU_FAULT_NEAR 1

/* A fault record's `kind`. */
/* A fault with no SMMUv3 event number of the same meaning (on SMMUv3, one other than a
 * translation or permission fault). */
#define IOMMU_FAULT_KIND_OTHER 0x0
/* F_UUT: a transaction the SMMU does not support. */
#define IOMMU_FAULT_KIND_F_UUT 0x1
/* C_BAD_STREAMID: a StreamID the SMMU is not configured for. */
#define IOMMU_FAULT_KIND_C_BAD_STREAMID 0x2
/* F_WALK_EABT: an external abort while walking the page tables. */
#define IOMMU_FAULT_KIND_F_WALK_EABT 0xb
/* F_TRANSLATION: no mapping at the address (none ever, or unmapped, or past a buffer's end). */
#define IOMMU_FAULT_KIND_F_TRANSLATION 0x10
/* F_ADDR_SIZE: an address wider than the device's address space. */
#define IOMMU_FAULT_KIND_F_ADDR_SIZE 0x11
/* F_ACCESS: the mapping's access flag is clear. */
#define IOMMU_FAULT_KIND_F_ACCESS 0x12
/* F_PERMISSION: a mapping is there, but it does not allow this access (a write through a
 * read-only mapping, or a read through a write-only one). */
#define IOMMU_FAULT_KIND_F_PERMISSION 0x13
/* F_TLB_CONFLICT: the SMMU's TLB held conflicting entries. */
#define IOMMU_FAULT_KIND_F_TLB_CONFLICT 0x20
/* Not a fault and not an SMMUv3 event number (those fit in 8 bits): the IOMMU failed (while
 * serving: SMMUv3 service failure, or it stopped answering; or at start-up) and was failed
 * closed as far as it could be. Nothing is served from now on: every call answers Unavailable,
 * and no mapping or removal in progress will complete. Its `device` is IOMMU_FAULT_NO_DEVICE,
 * its addresses 0. Whether every device's DMA now aborts is the ring's `failed` word
 * (`failed::DMA_STOPPED` or `failed::DMA_NOT_KNOWN_STOPPED`). */
#define IOMMU_FAULT_KIND_SERVICE_FAILED 0x100
/* Not a fault and not an SMMUv3 event number: the device, resumed from a storm's quarantine
 * earlier (on probation), was quarantined again because the IOMMU's event queue every device
 * shares overflowed with a quarter of it the device's own records (whosever records were lost).
 * `quarantined` is 1, its addresses 0, its `region` IOMMU_FAULT_NO_REGION; RESUME it as after a
 * storm. */
#define IOMMU_FAULT_KIND_QUARANTINED_AT_OVERFLOW 0x101

/* A fault ring's `failed` word, once the service has failed. */
/* The IOMMU confirmed that every device's DMA aborts (or faults) from now on: SMMUv3:
 * GBPA.ABORT in effect and SMMUEN = 0 acknowledged, or every STE aborting with every cached
 * entry invalidated and the invalidation completed; MMU-500: every stream faulting, read back. */
#define IOMMU_FAILED_DMA_STOPPED 0x1
/* It could not confirm it: a device may still reach what it had mapped (SMMUv3: no GBPA, as
 * QEMU 7.2, or a disable never acknowledged, with what the SMMU cached not invalidated; or an
 * SMMU refused at start-up, left as firmware had it). */
#define IOMMU_FAILED_DMA_NOT_KNOWN_STOPPED 0x2

_Static_assert(sizeof(struct iommu_fault_record) == 72, "FaultRecord's size");
_Static_assert(offsetof(struct iommu_fault_record, seq) == 0, "FaultRecord.seq");
_Static_assert(offsetof(struct iommu_fault_record, device) == 8, "FaultRecord.device");
_Static_assert(offsetof(struct iommu_fault_record, stream) == 12, "FaultRecord.stream");
_Static_assert(offsetof(struct iommu_fault_record, iova) == 16, "FaultRecord.iova");
_Static_assert(offsetof(struct iommu_fault_record, kind) == 24, "FaultRecord.kind");
_Static_assert(offsetof(struct iommu_fault_record, write) == 28, "FaultRecord.write");
_Static_assert(offsetof(struct iommu_fault_record, region) == 32, "FaultRecord.region");
_Static_assert(offsetof(struct iommu_fault_record, near) == 36, "FaultRecord.near");
_Static_assert(offsetof(struct iommu_fault_record, offset) == 40, "FaultRecord.offset");
_Static_assert(offsetof(struct iommu_fault_record, quarantined) == 48, "FaultRecord.quarantined");
_Static_assert(offsetof(struct iommu_fault_record, dropped_before) == 52, "FaultRecord.dropped_before");
_Static_assert(offsetof(struct iommu_fault_record, repeats) == 56, "FaultRecord.repeats");
_Static_assert(offsetof(struct iommu_fault_record, iova_last) == 64, "FaultRecord.iova_last");

struct iommu_fault_ring {
    uint64_t published; /* records with seq < published are valid (read with acquire) */
    uint64_t dropped;
    uint64_t acked;
    uint64_t dropped_unreported;
    struct iommu_fault_record records[IOMMU_FAULT_RING];
    uint64_t failed; /* nonzero once the IOMMU service failed, record or not (read with acquire) */
} __attribute__((aligned(4096)));

_Static_assert(offsetof(struct iommu_fault_ring, published) == 0, "FaultRing.published");
_Static_assert(offsetof(struct iommu_fault_ring, dropped) == 8, "FaultRing.dropped");
_Static_assert(offsetof(struct iommu_fault_ring, acked) == 16, "FaultRing.acked");
_Static_assert(offsetof(struct iommu_fault_ring, dropped_unreported) == 24, "FaultRing.dropped_unreported");
_Static_assert(offsetof(struct iommu_fault_ring, records) == 32, "FaultRing.records");
_Static_assert(offsetof(struct iommu_fault_ring, failed) == 2336, "FaultRing.failed");
_Static_assert(sizeof(struct iommu_fault_ring) == 4096, "FaultRing's size");

/* The mapping queue: MAP and UNMAP posted in a region shared with the IOMMU PD. */
/* The doorbell call: a client that waits for its completions anyway may call the IOMMU PD with
 * this label (no message registers) instead of notifying it. The IOMMU PD serves one batch of
 * the caller's queue, as for a notification, on the caller's time, and replies (label 0, one
 * value: the entries it took) once the completions are posted; no notification follows. On seL4
 * a call takes the kernel's fastpath where a notification and the wake-up behind it take the
 * slow path three times. A client without a queue is answered `UnknownOp`. */
#define IOMMU_QUEUE_SERVE 0x5100
/* The most entries the IOMMU PD takes from one client's queue per notification (or doorbell
 * call): a flood in one queue delays another client's call by at most this many entries' work
 * (and one sync) per queue. */
#define IOMMU_QUEUE_BATCH 64
#define IOMMU_QUEUE_MAX_ENTRIES 65536
#define IOMMU_QUEUE_ENTRY_MRS 4
/* The label of a request the client withdrew before the IOMMU PD took it (`Queue::withdraw`):
 * no call's, so it is answered `UnknownOp` and changes nothing. */
#define IOMMU_QUEUE_WITHDRAWN 0
/* The label the IOMMU PD leaves in a request it took (swapped in as it copies the label out,
 * `Queue::read`), so that a client's later withdrawal of it fails: no call's either. */
#define IOMMU_QUEUE_TAKEN 0xffffffffffffffffull

/* Read and written with atomics only: the other side is another address space. */
struct iommu_queue_header {
    uint32_t request_tail;    /* requests posted (the client's; stored with release) */
    uint32_t completion_head; /* completions read (the client's; stored with release) */
    uint32_t client_pad[14];
    uint32_t request_head;    /* requests taken (the IOMMU PD's; load with acquire) */
    uint32_t completion_tail; /* completions posted (the IOMMU PD's; load with acquire) */
    uint32_t server_pad[14];
};

struct iommu_queue_entry {
    uint64_t label; /* IOMMU_OP_MAP or IOMMU_OP_UNMAP */
    uint64_t tag;   /* the client's, copied into the completion */
    uint64_t mrs[IOMMU_QUEUE_ENTRY_MRS]; /* the call's message registers */
};

struct iommu_queue_completion {
    uint64_t tag;   /* the entry's */
    uint64_t label; /* 0 or an IOMMU_ERR_* code */
    uint64_t value; /* MAP's IOVA */
};

/* The region: the header, then `entries` requests, then `entries` completions. */
#define IOMMU_QUEUE_REQUESTS 128
#define IOMMU_QUEUE_COMPLETIONS(entries) (IOMMU_QUEUE_REQUESTS + 48 * (uint64_t)(entries))
#define IOMMU_QUEUE_REGION_SIZE(entries) (IOMMU_QUEUE_COMPLETIONS(entries) + 24 * (uint64_t)(entries))

_Static_assert(offsetof(struct iommu_queue_header, request_tail) == 0, "Header.request_tail");
_Static_assert(offsetof(struct iommu_queue_header, completion_head) == 4, "Header.completion_head");
_Static_assert(offsetof(struct iommu_queue_header, request_head) == 64, "Header.request_head");
_Static_assert(offsetof(struct iommu_queue_header, completion_tail) == 68, "Header.completion_tail");
_Static_assert(sizeof(struct iommu_queue_header) == 128, "Header's size");
_Static_assert(offsetof(struct iommu_queue_entry, label) == 0, "Entry.label");
_Static_assert(offsetof(struct iommu_queue_entry, tag) == 8, "Entry.tag");
_Static_assert(offsetof(struct iommu_queue_entry, mrs) == 16, "Entry.mrs");
_Static_assert(sizeof(struct iommu_queue_entry) == 48, "Entry's size");
_Static_assert(offsetof(struct iommu_queue_completion, tag) == 0, "Completion.tag");
_Static_assert(offsetof(struct iommu_queue_completion, label) == 8, "Completion.label");
_Static_assert(offsetof(struct iommu_queue_completion, value) == 16, "Completion.value");
_Static_assert(sizeof(struct iommu_queue_completion) == 24, "Completion's size");

/* For measurement only: a product IOMMU PD answers IOMMU_ERR_UNKNOWN_OP. */
/* WAKE_UP: no arguments. Reply: three values, in generic timer ticks, as the IOMMU PD timed its
 * own wake-ups (the handling of a notification, a fault or a call, from its handler's start to
 * its end, console output included, the kernel's entry and exit not): mr0 and mr1 = when the
 * wake-up before this call began and ended, mr2 = the longest wake-up since the previous
 * WAKE_UP (or since it started), which this call starts again. */
#define IOMMU_MEASURE_WAKE_UP 0x4d01
#define IOMMU_MEASURE_WAKE_UP_BEGAN 0
#define IOMMU_MEASURE_WAKE_UP_ENDED 1
#define IOMMU_MEASURE_WAKE_UP_LONGEST 2

#endif

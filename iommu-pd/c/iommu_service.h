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
#define IOMMU_ERR_UNKNOWN_OP 1
#define IOMMU_ERR_TRUNCATED 2
#define IOMMU_ERR_MALFORMED 3
#define IOMMU_ERR_BAD_HANDLE 4
#define IOMMU_ERR_BAD_DEVICE 5
#define IOMMU_ERR_NO_RIGHTS 6
#define IOMMU_ERR_OUT_OF_RANGE 7
#define IOMMU_ERR_OVERLAP 8
#define IOMMU_ERR_NOT_MAPPED 9
#define IOMMU_ERR_QUOTA_MAPPINGS 10
#define IOMMU_ERR_NO_CAPABILITY_SLOT 11
#define IOMMU_ERR_BAD_CLIENT 12
#define IOMMU_ERR_QUARANTINED 13
#define IOMMU_ERR_DENIED 14
#define IOMMU_ERR_HARDWARE 15
#define IOMMU_ERR_NO_IOVA 16
#define IOMMU_ERR_QUOTA_PAGES 17
#define IOMMU_ERR_NO_MAPPING_SLOT 18
#define IOMMU_ERR_NO_HANDLE_SLOT 19
#define IOMMU_ERR_REMOVAL_PENDING 20
#define IOMMU_ERR_QUOTA_GRANTS 21
#define IOMMU_ERR_STOPPED 22
#define IOMMU_ERR_UNAVAILABLE 23
#define IOMMU_ERR_CONFIG_DENIED 24
#define IOMMU_ERR_NO_CONFIG_SPACE 25

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

/* The fault ring: one page the IOMMU PD writes and this PD maps read-only. */
#define IOMMU_FAULT_RING 32

struct iommu_fault_record {
    uint64_t seq;
    uint32_t device;
    uint32_t stream;
    uint64_t iova;
    uint32_t kind;
    uint32_t write;
    uint32_t region;
    uint32_t near;
    uint64_t offset;
    uint32_t quarantined;
    uint32_t dropped_before;
    uint32_t repeats;
    uint64_t iova_last;
};

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
} __attribute__((aligned(4096)));

_Static_assert(offsetof(struct iommu_fault_ring, published) == 0, "FaultRing.published");
_Static_assert(offsetof(struct iommu_fault_ring, dropped) == 8, "FaultRing.dropped");
_Static_assert(offsetof(struct iommu_fault_ring, acked) == 16, "FaultRing.acked");
_Static_assert(offsetof(struct iommu_fault_ring, dropped_unreported) == 24, "FaultRing.dropped_unreported");
_Static_assert(offsetof(struct iommu_fault_ring, records) == 32, "FaultRing.records");
_Static_assert(sizeof(struct iommu_fault_ring) == 4096, "FaultRing's size");

#endif

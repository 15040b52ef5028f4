/*
 * The IOMMU PD panics inside this PD's call (images/iommu-panic-call.xml): c-smmu-failure's
 * test, its failure the IOMMU PD's own panic in an UNMAP it was serving (see there).
 */
#define IOMMU_PANIC_IN_CALL
#include "../c-smmu-failure/main.c"

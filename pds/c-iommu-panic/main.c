/*
 * The IOMMU PD panics while serving (images/iommu-panic.xml): c-smmu-failure's test, its
 * failure the IOMMU PD's own panic (see there).
 */
#define IOMMU_PANIC
#include "../c-smmu-failure/main.c"

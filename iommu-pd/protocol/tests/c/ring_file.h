/* The fault ring a test wrote to a file (tests/c_header.rs's ring_file), for the C programs
 * that read it as a PD reads its ring. */
#ifndef RING_FILE_H
#define RING_FILE_H
#include <stdio.h>

#include "iommu_service.h"

/* `*ring` from the file at `path` (NULL for none): 1, or 0 after printing "no ring". */
static inline int read_ring(const char *path, struct iommu_fault_ring *ring)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    int ok = f && fread(ring, sizeof *ring, 1, f) == 1;
    if (f) {
        fclose(f);
    }
    if (!ok) {
        printf("no ring\n");
    }
    return ok;
}
#endif

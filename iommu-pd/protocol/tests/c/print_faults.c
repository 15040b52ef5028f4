/* Prints the records of the fault ring at argv[1] as the C PDs print them (pds/include/
 * pd_print.h's print_faults), for tests/c_header.rs to read. */
#include <stdio.h>

#include <microkit.h>

static void microkit_dbg_puts(const char *s) { fputs(s, stdout); }

#include "pd_print.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

static struct iommu_fault_ring ring;

int main(int argc, char **argv)
{
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!f || fread(&ring, sizeof ring, 1, f) != 1) {
        printf("no ring\n");
        return 1;
    }
    fclose(f);
    uint64_t next = 0;
    print_faults("drv", (uintptr_t)&ring, 1, &next);
    return 0;
}

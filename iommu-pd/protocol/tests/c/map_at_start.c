/* Runs iommu_map_at_start against a stand-in IOMMU PD whose device is running, stopped
 * (left so for a restarted client), still away, or quarantined, and prints, for
 * tests/c_header.rs, what it returned, the requests it made, and the registers of its
 * last MAP and of its RESUME. */
#include <stdio.h>
#include <string.h>

#include "iommu_client.h"

uint64_t stub_mrs[128];
microkit_msginfo stub_call;
uint64_t stub_reply[16];
unsigned stub_notified;
uint64_t (*stub_iommu_pd)(uint64_t label);

/* The stand-in's device: what MAP answers while it does not run, and what RESUME answers. */
static uint64_t blocked, resume_answer;
static char made[64];
static uint64_t map_mrs[4], resume_mrs[2];

static uint64_t iommu_pd(uint64_t label)
{
    strncat(made, made[0] ? " " : "", sizeof made - strlen(made) - 1);
    switch (label) {
    case IOMMU_OP_MAP:
        strncat(made, "map", sizeof made - strlen(made) - 1);
        memcpy(map_mrs, &stub_mrs[64], sizeof map_mrs);
        if (blocked) {
            return blocked;
        }
        stub_mrs[0] = 0x100000;
        return 0;
    case IOMMU_OP_RESUME:
        strncat(made, "resume", sizeof made - strlen(made) - 1);
        memcpy(resume_mrs, &stub_mrs[64], sizeof resume_mrs);
        if (resume_answer == 0) {
            blocked = 0;
        }
        return resume_answer;
    default:
        strncat(made, "other", sizeof made - strlen(made) - 1);
        return IOMMU_ERR_UNKNOWN_OP;
    }
}

static void run(const char *name, uint64_t blocked_by, uint64_t resume_answers)
{
    blocked = blocked_by;
    resume_answer = resume_answers;
    made[0] = 0;
    uint64_t iova = 0;
    uint64_t err = iommu_map_at_start(7, 3, 2, 0x2000, 0x1000, IOMMU_IOVA_ANY, IOMMU_RIGHTS_READ_WRITE, &iova);
    printf("start %s %llu 0x%llx made %s\n", name, (unsigned long long)err, (unsigned long long)iova, made);
    printf("map %s %llu %llu %llu %llu\n", name, (unsigned long long)map_mrs[0], (unsigned long long)map_mrs[1],
           (unsigned long long)map_mrs[2], (unsigned long long)map_mrs[3]);
    if (strstr(made, "resume")) {
        printf("resume %s %llu %llu\n", name, (unsigned long long)resume_mrs[0], (unsigned long long)resume_mrs[1]);
    }
}

int main(void)
{
    stub_iommu_pd = iommu_pd;
    run("running", 0, 0);
    run("stopped", IOMMU_ERR_STOPPED, 0);
    run("still_away", IOMMU_ERR_STOPPED, IOMMU_ERR_DEVICE_MISSING);
    run("rationed", IOMMU_ERR_STOPPED, IOMMU_ERR_RESET_RATIONED);
    run("quarantined", IOMMU_ERR_QUARANTINED, 0);
    return 0;
}

/* A host stand-in for the SDK's microkit.h, just enough for iommu_client.h: a protected
 * procedure call records its label and message registers and answers with canned ones,
 * or as a stand-in IOMMU PD says (stub_iommu_pd). */
#ifndef MICROKIT_H
#define MICROKIT_H
#include <stdint.h>

typedef unsigned int microkit_channel;
typedef struct {
    uint64_t label;
    uint16_t count;
} microkit_msginfo;
typedef uint64_t seL4_Word;
typedef uint16_t seL4_Uint16;
typedef uint8_t seL4_Uint8;

extern uint64_t stub_mrs[128];
extern microkit_msginfo stub_call;
extern uint64_t stub_reply[16];
/* When set, the IOMMU PD's side of a call (the request's registers at stub_mrs[64..],
 * the reply's written to stub_mrs[0..]): the call is answered with the label it returns.
 * Otherwise every call is answered 0 with stub_reply. */
extern uint64_t (*stub_iommu_pd)(uint64_t label);

static inline microkit_msginfo microkit_msginfo_new(seL4_Word label, seL4_Uint16 count)
{
    microkit_msginfo m = {label, count};
    return m;
}
static inline seL4_Word microkit_msginfo_get_label(microkit_msginfo m) { return m.label; }
static inline void microkit_mr_set(seL4_Uint8 mr, seL4_Word value) { stub_mrs[mr] = value; }
static inline seL4_Word microkit_mr_get(seL4_Uint8 mr) { return stub_mrs[mr]; }
static inline microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo m)
{
    (void)ch;
    stub_call = m;
    for (unsigned i = 0; i < 16; i++) {
        stub_mrs[64 + i] = stub_mrs[i];
        stub_mrs[i] = stub_reply[i];
    }
    return microkit_msginfo_new(stub_iommu_pd ? stub_iommu_pd(m.label) : 0, 10);
}
extern unsigned stub_notified;
static inline void microkit_notify(microkit_channel ch) { stub_notified += ch; }
#endif

/* The order of booting the guest again on its stopped disk (restart.h). */
#include "restart.h"

bool vm_restart_steps(const struct restart_steps *steps, const char *flag)
{
    /* The images first, while the disk is still stopped: a guest that cannot be loaded
     * leaves it stopped. RESUME before them left the disk running, the guest's RAM mapped
     * for it, for a guest that never started. */
    if (!steps->load(flag)) {
        return false;
    }
    if (steps->resume() != 0) {
        return false;
    }
    /* It stops the disk again itself if the disk cannot decode. */
    if (!steps->decoding()) {
        return false;
    }
    if (!steps->start()) {
        steps->stop();
        return false;
    }
    return true;
}

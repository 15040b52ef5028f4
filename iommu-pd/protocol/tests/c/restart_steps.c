/* pds/linux-vmm/restart.c's order on the host, against stand-ins for its steps: a disk that
 * is stopped or resumed, and a guest that is loaded and started or not. Each scenario fails
 * one step (or none) and prints, for tests/vm_restart.rs, the steps run, whether the disk is
 * left resumed, and whether the guest runs. */
#include <stdio.h>
#include <string.h>

#include "restart.h"

static const char *failing;
static char trace[64];
static bool resumed, running;

static void step(const char *name)
{
    strcat(trace, trace[0] ? " " : "");
    strcat(trace, name);
}

static bool load(const char *flag)
{
    step(strcmp(flag, "boot=again") == 0 ? "load" : "load(wrong flag)");
    return strcmp(failing, "load") != 0;
}

static uint64_t resume(void)
{
    step("resume");
    if (strcmp(failing, "resume") == 0) {
        return 27; /* refused: nothing done, the disk stays stopped */
    }
    resumed = true;
    return 0;
}

/* As vpci_resumed: a disk that cannot decode is stopped again. */
static bool decoding(void)
{
    step("decoding");
    if (strcmp(failing, "decoding") == 0) {
        resumed = false;
        return false;
    }
    return true;
}

static bool start(void)
{
    step("start");
    running = strcmp(failing, "start") != 0;
    return running;
}

static bool stop(void)
{
    step("stop");
    resumed = false;
    return true;
}

int main(void)
{
    static const struct restart_steps steps = {
        .load = load, .resume = resume, .decoding = decoding, .start = start, .stop = stop
    };
    static const char *const scenarios[] = { "none", "load", "resume", "decoding", "start" };
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        failing = scenarios[i];
        trace[0] = 0;
        resumed = running = false;
        bool ok = vm_restart_steps(&steps, "boot=again");
        printf("failing %s: steps %s; returns %s; disk %s; guest %s\n", failing, trace, ok ? "true" : "false",
               resumed ? "resumed" : "stopped", running ? "running" : "not running");
    }
    return 0;
}

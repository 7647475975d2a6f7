/* harness.c - runs the generated network on observations read from a file and writes the
 * actions to another (raw little-endian float32, row after row). Used by firmware_export's
 * host check (gcc, paths from argv) and target check (arm-none-eabi-gcc under QEMU, paths
 * compiled in with -DHARNESS_OBS_PATH/-DHARNESS_ACT_PATH, files reached via semihosting).
 *
 * With -DHARNESS_STACK_PAINT it first measures the stack one inference uses: it paints the
 * free stack below its own stack pointer, runs the network once, and finds the deepest word
 * that changed. With -DHARNESS_SYSTICK it times every inference with the Cortex-M SysTick
 * counter on the processor clock (under `qemu -icount shift=0` every instruction advances the
 * clock by 1 ns, so the count measures instructions executed).
 * Prints one line: "harness: N inferences, stack S bytes, systick T ticks, max M"
 * (S, T, M = -1 if not measured; T summed over the N inferences, M the longest one).
 */
#include <stdint.h>
#include <stdio.h>

#include "swarm_policy.h"

#ifdef HARNESS_SYSTICK
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#endif

#ifdef HARNESS_STACK_PAINT
extern uint32_t _stack_bottom; /* from the linker script: lowest address of the stack */
#define PAINT 0xC5C5C5C5u
#endif

static float obs[SWARM_POLICY_OBS_DIM];
static float act[SWARM_POLICY_ACTION_DIM];

int main(int argc, char **argv)
{
    long stack_bytes = -1;
    long long systick = -1;
    long systick_max = -1;
    const char *obs_path;
    const char *act_path;
#ifdef HARNESS_STACK_PAINT
    {
        uintptr_t sp;
        volatile uint32_t *p = &_stack_bottom;
        __asm__ volatile("mov %0, sp" : "=r"(sp));
        while ((uintptr_t)p < sp - 16u) {
            *p++ = PAINT;
        }
        swarm_policy_run(obs, act);
        p = &_stack_bottom;
        while ((uintptr_t)p < sp && *p == PAINT) {
            ++p;
        }
        stack_bytes = (long)(sp - (uintptr_t)p);
    }
#endif
#ifdef HARNESS_SYSTICK
    SYST_RVR = 0xFFFFFFu; /* 24-bit down-counter, processor clock, no interrupt */
    SYST_CVR = 0u;
    SYST_CSR = 5u;
    systick = 0;
#endif
#ifdef HARNESS_OBS_PATH
    (void)argc;
    (void)argv;
    obs_path = HARNESS_OBS_PATH;
    act_path = HARNESS_ACT_PATH;
#else
    if (argc != 3) {
        fprintf(stderr, "usage: %s OBS.f32 ACTIONS.f32\n", argc > 0 ? argv[0] : "harness");
        return 2;
    }
    obs_path = argv[1];
    act_path = argv[2];
#endif
    FILE *in = fopen(obs_path, "rb");
    FILE *out = fopen(act_path, "wb");
    if (in == NULL || out == NULL) {
        printf("harness: cannot open %s or %s\n", obs_path, act_path);
        return 3;
    }
    long n = 0;
    while (fread(obs, sizeof(float), SWARM_POLICY_OBS_DIM, in) == SWARM_POLICY_OBS_DIM) {
#ifdef HARNESS_SYSTICK
        const uint32_t start = SYST_CVR;
        swarm_policy_run(obs, act);
        const long ticks = (long)((start - SYST_CVR) & 0xFFFFFFu);
        systick += ticks;
        systick_max = ticks > systick_max ? ticks : systick_max;
#else
        swarm_policy_run(obs, act);
#endif
        if (fwrite(act, sizeof(float), SWARM_POLICY_ACTION_DIM, out) != SWARM_POLICY_ACTION_DIM) {
            printf("harness: write failed after %ld inferences\n", n);
            return 4;
        }
        ++n;
    }
    fclose(in);
    if (fclose(out) != 0) {
        printf("harness: closing %s failed\n", act_path);
        return 4;
    }
    printf("harness: %ld inferences, stack %ld bytes, systick %lld ticks, max %ld\n", n,
           stack_bytes, systick, systick_max);
    return 0;
}

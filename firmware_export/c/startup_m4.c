/* startup_m4.c - minimal bare-metal start-up for the STM32F405 (Cortex-M4F) image that
 * firmware_export runs under `qemu-system-arm -M netduinoplus2` with semihosting.
 *
 * Order matters (either mistake hangs the program silently): enable the FPU before any
 * float instruction (the image is built with -mfloat-abi=hard), and copy .data from its load
 * address in flash to RAM before main. Then zero .bss, open the semihosting stdio handles
 * (newlib rdimon) and run main; exit() ends QEMU through semihosting. A fault also exits,
 * with status 1, so a crash cannot hang the check.
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void initialise_monitor_handles(void);
extern int main(int argc, char **argv);

void Reset_Handler(void);
void Fault_Handler(void);

#define CPACR (*(volatile uint32_t *)0xE000ED88u)

__attribute__((section(".isr_vector"), used))
void (*const vector_table[16])(void) = {
    (void (*)(void))(&_estack), /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};

void Reset_Handler(void)
{
    CPACR |= 0xFu << 20; /* CP10 and CP11: full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    initialise_monitor_handles();
    exit(main(0, 0));
}

/* newlib's exit() runs the .fini_array through __libc_fini_array, which calls _fini last;
 * nothing here needs finalising. */
void _fini(void);
void _fini(void)
{
}

void Fault_Handler(void)
{
    _Exit(1);
}

/*
 * Minimal Cortex-M start-up for bare-metal test and verification images (not part of a model's library).
 *
 * QEMU's M-profile boards read the initial stack pointer and the reset vector from address 0, so the
 * vector table goes in its own section `.vectors`, placed there with -Wl,--section-start=.vectors=0x0.
 * The targets link with -Wl,--section-start=.vectors=0x0 -Wl,--undefined=prunec_vectors.
 * Reset enables the coprocessors (CPACR bits 20-23: CP10/CP11, i.e. the FPU and, on Armv8.1-M, MVE) before
 * any floating-point instruction runs, then jumps to newlib's _start (crt0 of --specs=rdimon.specs), which
 * sets up the stack and heap through semihosting, runs constructors and calls main; main's return value
 * becomes QEMU's exit status.
 */
#include <stdint.h>

extern void _start(void);

#define PRUNEC_BOOT_STACK_WORDS 1024u
static uint32_t prunec_boot_stack[PRUNEC_BOOT_STACK_WORDS] __attribute__((aligned(8)));

void prunec_reset_handler(void);
void prunec_fault_handler(void);

void prunec_reset_handler(void) {
  volatile uint32_t *const cpacr = (volatile uint32_t *)0xE000ED88u;
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  _start();
  for (;;) {
  }
}

/* A fault ends the run through semihosting SYS_EXIT (ADP_Stopped_RunTimeError) so QEMU does not hang. */
void prunec_fault_handler(void) {
  register uint32_t op __asm__("r0") = 0x18u;
  register uint32_t arg __asm__("r1") = 0x20023u;
  __asm__ volatile("bkpt 0xab" : : "r"(op), "r"(arg) : "memory");
  for (;;) {
  }
}

/* Global, so that the link can keep it through --gc-sections with -Wl,--undefined=prunec_vectors (nothing
 * references the table; the core reads it at reset). */
extern void (*const prunec_vectors[16])(void);
__attribute__((section(".vectors"), used)) void (*const prunec_vectors[16])(void) = {
    (void (*)(void))(prunec_boot_stack + PRUNEC_BOOT_STACK_WORDS),
    prunec_reset_handler,  /* reset */
    prunec_fault_handler,  /* NMI */
    prunec_fault_handler,  /* HardFault */
    prunec_fault_handler,  /* MemManage */
    prunec_fault_handler,  /* BusFault */
    prunec_fault_handler,  /* UsageFault */
};

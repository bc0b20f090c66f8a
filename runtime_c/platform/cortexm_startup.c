/*
 * Minimal Cortex-M start-up for bare-metal test and verification images (not part of a model's library).
 *
 * QEMU's M-profile boards read the initial stack pointer and the reset vector from address 0, so the
 * vector table goes in its own section `.vectors`, placed there with -Wl,--section-start=.vectors=0x0 and
 * kept through --gc-sections with -Wl,--undefined=prunec_vectors. The board's memory layout comes from the
 * target file's link flags as two symbols:
 *   __prunec_stack_top   initial stack pointer (top of a RAM region above the heap)
 *   __prunec_heap_limit  end of the RAM region that holds the image; the heap runs from the end of .bss
 * Reset enables the coprocessors (CPACR bits 20-23: CP10/CP11, i.e. the FPU and, on Armv8.1-M, MVE) before
 * any floating-point instruction runs, clears .bss, starts newlib's semihosting I/O (rdimon) and
 * constructors, and calls main(argc, argv) with the command line of semihosting SYS_GET_CMDLINE (QEMU:
 * -semihosting-config arg=PROGRAM,arg=A,...; split at spaces, at most PRUNEC_MAX_ARGS words; main(0, NULL)
 * when there is none); main's return value goes to exit(), which QEMU returns as its exit status. (newlib's own crt0 is not used: it takes the stack and heap from the semihosting HEAPINFO call,
 * which on QEMU describes the region at address 0 only, 512 KB on the MPS3 AN547.)
 */
#include <stdint.h>
#include <stdlib.h>

extern char __prunec_stack_top[];
extern char __prunec_heap_limit[];
extern char __bss_start__[], __bss_end__[];
extern unsigned int __heap_limit; /* newlib/libgloss _sbrk's limit (rdimon) */
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern int main(int argc, char **argv);

void prunec_reset_handler(void);
int prunec_cmdline_args(char **argv, int max);

#define PRUNEC_MAX_ARGS 16
static char prunec_cmdline[256];

/* Semihosting SYS_GET_CMDLINE (0x15) split at spaces into argv; returns argc (0 if the host gives none). */
int prunec_cmdline_args(char **argv, int max) {
  volatile uint32_t block[2];
  register uint32_t op __asm__("r0") = 0x15u;
  register uint32_t arg __asm__("r1") = (uint32_t)(uintptr_t)block;
  char *c;
  int argc = 0;
  block[0] = (uint32_t)(uintptr_t)prunec_cmdline;
  block[1] = (uint32_t)sizeof(prunec_cmdline) - 1u;
  __asm__ volatile("bkpt 0xab" : "+r"(op) : "r"(arg) : "memory");
  if (op != 0u || block[1] >= sizeof(prunec_cmdline)) {
    return 0;
  }
  prunec_cmdline[block[1]] = '\0';
  for (c = prunec_cmdline; *c != '\0' && argc < max;) {
    while (*c == ' ') {
      *c++ = '\0';
    }
    if (*c == '\0') {
      break;
    }
    argv[argc++] = c;
    while (*c != '\0' && *c != ' ') {
      c++;
    }
  }
  argv[argc] = NULL;
  return argc;
}
void prunec_fault_handler(void);

void prunec_reset_handler(void) {
  volatile uint32_t *const cpacr = (volatile uint32_t *)0xE000ED88u;
  char *p;
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  for (p = __bss_start__; p < __bss_end__; p++) {
    *(volatile char *)p = 0;
  }
  __heap_limit = (unsigned int)(uintptr_t)__prunec_heap_limit;
  initialise_monitor_handles();
  __libc_init_array();
  {
    static char *argv[PRUNEC_MAX_ARGS + 1];
    const int argc = prunec_cmdline_args(argv, PRUNEC_MAX_ARGS);
    exit(main(argc, argc ? argv : NULL));
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

extern void (*const prunec_vectors[16])(void);
__attribute__((section(".vectors"), used)) void (*const prunec_vectors[16])(void) = {
    (void (*)(void))__prunec_stack_top,
    prunec_reset_handler,  /* reset */
    prunec_fault_handler,  /* NMI */
    prunec_fault_handler,  /* HardFault */
    prunec_fault_handler,  /* MemManage */
    prunec_fault_handler,  /* BusFault */
    prunec_fault_handler,  /* UsageFault */
};

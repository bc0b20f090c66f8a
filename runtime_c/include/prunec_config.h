/*
 * prunec runtime: build configuration. This file is the runtime's default; `prunec build` writes its own
 * copy into each build's runtime/include/ with the values that build needs (docs/BUILD.md), so that every
 * build system compiling the copied sources (the generated Makefile and CMakeLists.txt, a firmware project's
 * own) sees the same configuration. A -D on the command line wins over both.
 *
 * PRUNEC_RCSR_ODD_WIDTHS
 *   1: the relative-indexed CSR kernels decode every index width 1..16 (docs/FORMAT.md).
 *   0: only 4, 8 and 16, the widths with fast paths on every ISA: the other widths' decoders are left out of
 *      the object code (about 2 KB less on Cortex-M), and a layer of another width fills its output with NaN,
 *      as an invalid one does. `prunec build` sets 0 when none of its layers uses another width.
 */
#ifndef PRUNEC_CONFIG_H
#define PRUNEC_CONFIG_H

#ifndef PRUNEC_RCSR_ODD_WIDTHS
#define PRUNEC_RCSR_ODD_WIDTHS 1
#endif

#endif /* PRUNEC_CONFIG_H */

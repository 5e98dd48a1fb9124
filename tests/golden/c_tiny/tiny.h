/* tiny.h: a logic gate network exported by diffgates as C99 with no dependencies.
 *
 * Circuit: 6 input bits; 16 gates (12 after folding constants and copies);
 * 2 classes of 4 outputs each; tau = 2.0 (head: group_sum).
 * Words: portable uint64_t words; layout: code.
 *
 * ABI
 *   int tiny_counts(const unsigned char *x, size_t n, int32_t *counts);
 *     x: n samples, sample-major, TINY_NUM_INPUTS bytes each: input bit i of sample s is
 *        x[s * TINY_NUM_INPUTS + i] and must be 0 or 1 (any other byte value gives undefined results).
 *     counts: n * TINY_NUM_CLASSES int32: counts[s * TINY_NUM_CLASSES + c] is the number of true outputs
 *        of class c for sample s (0 .. TINY_GROUP_SIZE); the model's score is counts / TINY_TAU.
 *     Returns 0, or -1 when the scratch buffers (about TINY_SCRATCH_BYTES) cannot be allocated.
 *   int tiny_classify(const unsigned char *x, size_t n, int32_t *classes);
 *     classes[s]: the class with the highest count, ties to the lowest index. Returns as above.
 *   int tiny_pack(const unsigned char *x, size_t n, uint64_t *packed);
 *   int tiny_counts_packed(const uint64_t *packed, size_t n, int32_t *counts);
 *     The batch packed into bits, TINY_BLOCK samples per block: packed holds ceil(n / TINY_BLOCK) blocks
 *     of TINY_NUM_INPUTS * TINY_LANES uint64_t; in block b, bit k of word [i * TINY_LANES + q] is
 *     input bit i of sample b * TINY_BLOCK + 64 * q + k (bits of samples past n are 0).
 *     tiny_pack writes that format from x; tiny_counts_packed skips the packing.
 *   int tiny_cpu_supported(void);
 *     1 when this CPU can run the compiled word type (AVX2 builds check for AVX2), else 0.
 *
 * Input bit layout (bit i = input feature i of the encoding):
 *     {"kind": "bits", "names": ["x0", "x1", "x2", "x3", "x4", "x5"]}
 *
 * Thread safety: no global or static mutable state; each call allocates its own scratch buffers, so
 * concurrent calls (on different outputs) from several threads are safe.
 *
 * Build: cc -std=c99 -O2 -o example example_main.c tiny.c   (or: make)
 */
#ifndef TINY_H
#define TINY_H

#include <stddef.h>
#include <stdint.h>

#define TINY_NUM_INPUTS 6
#define TINY_NUM_OUTPUTS 8
#define TINY_NUM_CLASSES 2
#define TINY_GROUP_SIZE 4
#define TINY_TAU 2.0
#define TINY_LANES 1
#define TINY_BLOCK 64
#define TINY_SCRATCH_BYTES 416

#ifdef __cplusplus
extern "C" {
#endif

int tiny_counts(const unsigned char *x, size_t n, int32_t *counts);
int tiny_classify(const unsigned char *x, size_t n, int32_t *classes);
int tiny_pack(const unsigned char *x, size_t n, uint64_t *packed);
int tiny_counts_packed(const uint64_t *packed, size_t n, int32_t *counts);
int tiny_cpu_supported(void);

#ifdef __cplusplus
}
#endif

#endif /* TINY_H */

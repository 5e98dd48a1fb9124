/* Fused CPU training kernel of LogicLayer (C11 + OpenMP), loaded by diffgates/kernels/cpu.py.
 *
 * Built on first use by diffgates._native.build_shared_library (cached by source hash) and called
 * through ctypes on torch tensors' data pointers; cpu.py registers it as the torch custom ops
 * diffgates::logic_layer_cpu and diffgates::logic_layer_cpu_backward.
 *
 * Math (BRIEF.md, 4-coefficient form): neuron j reads a = x[ia[j]], b = x[ib[j]] and outputs
 *     y = c0 + c1 a + c2 b + c3 ab        (c = coeffs[j], the softmax-mixed gate relaxations)
 * Backward, for incoming gradient g = dL/dy:
 *     dL/da += g (c1 + c3 b),  dL/db += g (c2 + c3 a),  dL/dc += sum over the batch of g (1, a, b, ab).
 * A self pair (ia == ib) gets both input terms, i.e. g (c1 + c2 + 2 c3 a), as autograd would.
 *
 * Memory layout: FEATURE-MAJOR. Activations live as (features, N) blocks, so a neuron's inputs are
 * two contiguous rows of N and its output one contiguous row: every inner loop is a unit-stride SIMD
 * loop over the batch. The batch-major alternative, (N, features), needs a scalar gather per element
 * and a scalar scatter in backward; measured on a 2-core EPYC (AVX2), 8000 -> 8000 neurons, batch
 * 100, float32, 2 threads, best of repeated runs: forward 0.2 ms feature-major vs 0.9 ms batch-major,
 * backward 1.2 ms vs 2.4 ms (batch-major with 256..8000-neuron tiles: 2.4..3.1 ms). Software
 * prefetching of the next neurons' rows (distance 4, 8, 16) measured no gain, so there is none.
 *
 * Parallelisation:
 *   forward  - over neurons: each thread writes whole output rows, nothing shared.
 *   backward - over the batch: each thread owns a slice of columns of every row, so the input-gradient
 *              scatter (many neurons share an input) needs no atomics; each thread sums its slice's
 *              coefficient gradients into its own partial buffer, then the partials are reduced.
 * The thread count is an argument (cpu.py passes torch.get_num_threads()). With a single OpenMP
 * runtime in the process (this library resolves libgomp.so.1 to the copy torch already loaded) the
 * threads are torch's own pool.
 *
 * Indices are validated by dg_check_connections before any kernel runs (cpu.py calls it).
 */
#ifndef DG_T /* ---------------------------------------------------------------- common part ---- */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DG_CAT2(a, b) a##_##b
#define DG_CAT(a, b) DG_CAT2(a, b)

/* Index of the first entry of conn (2*out values) outside [0, in), or -1 when all are valid. */
int64_t dg_check_connections(const int64_t *conn, int64_t out, int64_t in) {
    for (int64_t k = 0; k < 2 * out; k++)
        if (conn[k] < 0 || conn[k] >= in) return k;
    return -1;
}

/* Whether the library was built with OpenMP (else every call runs on one thread). */
int dg_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The kernels below are written once over DG_T and instantiated for float and double by including
 * this file into itself: __FILE__ names it (the build compiles it from an absolute path). */
#define DG_T float
#define DG_SUFFIX f32
#include __FILE__
#undef DG_T
#undef DG_SUFFIX
#define DG_T double
#define DG_SUFFIX f64
#include __FILE__
#undef DG_T
#undef DG_SUFFIX

#else /* -------------------------------------------------------- instantiated per DG_T ---- */
#define DG_FN(name) DG_CAT(name, DG_SUFFIX)

/* y (out, N) from x (in, N); coeffs (out, 4); conn (2, out): row 0 = a indices, row 1 = b. */
int DG_FN(dg_forward)(const DG_T *restrict x, const DG_T *restrict coeffs, const int64_t *restrict conn,
                      DG_T *restrict y, int64_t n, int64_t in, int64_t out, int nthreads) {
    const int64_t *ia = conn, *ib = conn + out;
    (void)in;
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j = 0; j < out; j++) {
        const DG_T *restrict a = x + ia[j] * n;
        const DG_T *restrict b = x + ib[j] * n;
        DG_T *restrict yj = y + j * n;
        const DG_T c0 = coeffs[4 * j], c1 = coeffs[4 * j + 1], c2 = coeffs[4 * j + 2], c3 = coeffs[4 * j + 3];
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            yj[i] = c0 + c1 * a[i] + (c2 + c3 * a[i]) * b[i]; /* = c0 + c1 a + c2 b + c3 ab, one FMA fewer */
    }
    return 0;
}

/* One neuron's backward over batch columns [i0, i1) for a != b: input-gradient rows ga, gb and the
 * four coefficient-gradient sums s. Separate restrict-qualified rows let the compiler vectorise. */
static inline void DG_FN(dg_neuron_backward)(DG_T *restrict ga, DG_T *restrict gb, const DG_T *restrict a,
                                             const DG_T *restrict b, const DG_T *restrict g, int64_t i0,
                                             int64_t i1, DG_T c1, DG_T c2, DG_T c3, DG_T *restrict s) {
    DG_T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    if (ga) {
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t i = i0; i < i1; i++) {
            const DG_T gi = g[i], ai = a[i], bi = b[i];
            ga[i] += gi * (c1 + c3 * bi);
            gb[i] += gi * (c2 + c3 * ai);
            s0 += gi; s1 += gi * ai; s2 += gi * bi; s3 += gi * ai * bi;
        }
    } else { /* the layer input needs no gradient (e.g. the first layer): only the sums */
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t i = i0; i < i1; i++) {
            const DG_T gi = g[i], ai = a[i], bi = b[i];
            s0 += gi; s1 += gi * ai; s2 += gi * bi; s3 += gi * ai * bi;
        }
    }
    s[0] = s0; s[1] = s1; s[2] = s2; s[3] = s3;
}

/* Self pair (a == b): y = c0 + (c1 + c2) a + c3 a^2. */
static inline void DG_FN(dg_self_backward)(DG_T *restrict ga, const DG_T *restrict a, const DG_T *restrict g,
                                           int64_t i0, int64_t i1, DG_T c1, DG_T c2, DG_T c3, DG_T *restrict s) {
    DG_T s0 = 0, s1 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s3)
    for (int64_t i = i0; i < i1; i++) {
        const DG_T gi = g[i], ai = a[i];
        if (ga) ga[i] += gi * (c1 + c2 + 2 * c3 * ai);
        s0 += gi; s1 += gi * ai; s3 += gi * ai * ai;
    }
    s[0] = s0; s[1] = s1; s[2] = s1; s[3] = s3;
}

/* Gradients of dg_forward. g (out, N) and x (in, N) feature-major; writes gx (in, N) when gx is
 * non-NULL and gc (out, 4) when gc is non-NULL. partial: scratch of (nthreads - 1) * out * 4 values
 * (thread 0 accumulates straight into gc). Returns 0. */
int DG_FN(dg_backward)(const DG_T *restrict g, const DG_T *restrict x, const DG_T *restrict coeffs,
                       const int64_t *restrict conn, DG_T *restrict gx, DG_T *restrict gc,
                       DG_T *restrict partial, int64_t n, int64_t in, int64_t out, int nthreads) {
    const int64_t *ia = conn, *ib = conn + out;
    /* Column slices start on 64-byte boundaries where the batch is large enough, so two threads never
     * write the same cache line of gx; for small batches a balanced split matters more. */
    const int64_t line = 64 / (int64_t)sizeof(DG_T);
    (void)nthreads;
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        int64_t chunk = (n + nt - 1) / nt;
        if (n >= 8 * line * nt) chunk = (chunk + line - 1) / line * line;
        const int64_t i0 = DG_MIN(n, chunk * t), i1 = DG_MIN(n, chunk * (t + 1));
        DG_T sums[4];
        DG_T *mine = gc ? (t == 0 ? gc : partial + (int64_t)(t - 1) * out * 4) : sums;
        const int64_t step = gc ? 4 : 0;
        if (gx && i0 == 0 && i1 == n)
            memset(gx, 0, (size_t)(in * n) * sizeof(DG_T)); /* one thread owns every column */
        else if (gx && i1 > i0)
            for (int64_t r = 0; r < in; r++) memset(gx + r * n + i0, 0, (size_t)(i1 - i0) * sizeof(DG_T));
        for (int64_t j = 0; j < out; j++) {
            const DG_T c1 = coeffs[4 * j + 1], c2 = coeffs[4 * j + 2], c3 = coeffs[4 * j + 3];
            const int64_t ra = ia[j] * n, rb = ib[j] * n;
            if (ra != rb)
                DG_FN(dg_neuron_backward)(gx ? gx + ra : NULL, gx ? gx + rb : NULL, x + ra, x + rb, g + j * n,
                                          i0, i1, c1, c2, c3, mine + step * j);
            else
                DG_FN(dg_self_backward)(gx ? gx + ra : NULL, x + ra, g + j * n, i0, i1, c1, c2, c3,
                                        mine + step * j);
        }
        if (gc && nt > 1) {
#pragma omp barrier
#pragma omp for schedule(static)
            for (int64_t k = 0; k < out * 4; k++) {
                DG_T s = gc[k];
                for (int u = 1; u < nt; u++) s += partial[(int64_t)(u - 1) * out * 4 + k];
                gc[k] = s;
            }
        }
    }
    return 0;
}

/* dst (cols, rows) = transpose of src (rows, cols), both contiguous: converts batch-major tensors
 * (e.g. the loss gradient arriving from GroupSum) to the feature-major layout. Works in 32 x 32
 * tiles so both sides are read and written in whole cache lines (torch's strided copy of a
 * (100, 8000) float32 tensor measured 5-8x slower). */
int DG_FN(dg_transpose)(const DG_T *restrict src, DG_T *restrict dst, int64_t rows, int64_t cols,
                        int nthreads) {
    const int64_t tile = 32;
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += tile)
        for (int64_t r0 = 0; r0 < rows; r0 += tile) {
            const int64_t r1 = DG_MIN(rows, r0 + tile), c1 = DG_MIN(cols, c0 + tile);
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++) dst[c * rows + r] = src[r * cols + c];
        }
    return 0;
}

#undef DG_FN
#endif

/* Fused CPU training kernel of LogicLayer (C11 + OpenMP), loaded by diffgates/kernels/cpu.py.
 *
 * Built on first use by diffgates._native.build_shared_library (cached by source hash) and called
 * through ctypes on torch tensors' data pointers; cpu.py runs it as the CPU implementation of the
 * torch custom ops diffgates::logic_layer, diffgates::gate_coefficients and their backward ops
 * (kernels/ops.py). To inspect what the compiler vectorised, build it by hand, e.g.
 *     gcc -O3 -std=c11 -fopenmp -mavx512f -mfma -shared -fPIC cpu_kernel.c -o k.so -fopt-info-vec
 *
 * Math (the 4-coefficient form of diffgates.gates): neuron j reads a = x[ia[j]], b = x[ib[j]] and outputs
 *     y = c0 + c1 a + c2 b + c3 ab        (c = coeffs[r(j)], the softmax-mixed gate relaxations)
 * where r(j) = j, or idx[j] when a coefficient index is given (many neurons, e.g. a convolution's
 * positions, share one row of coefficients).
 * Backward, for incoming gradient g = dL/dy:
 *     dL/da += g (c1 + c3 b),  dL/db += g (c2 + c3 a),  dL/dc[r(j)] += sum over the batch of g (1, a, b, ab).
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
 *              coefficient gradients into its own partial buffer of (rows, 4), then the partials are
 *              reduced in thread order (deterministic for a given thread count).
 *   parameters -> coefficients (dg_coefficients_*, dg_entry_coefficients_*) - over blocks of 16
 *              neurons, each computed by one thread (results do not depend on the thread count).
 * The thread count is an argument (cpu.py passes torch.get_num_threads()). With a single OpenMP
 * runtime in the process (this library resolves libgomp.so.1 to the copy torch already loaded) the
 * threads are torch's own pool.
 *
 * Indices are validated by dg_check_connections and dg_check_index before any kernel runs (cpu.py).
 */
#ifndef DG_T /* ---------------------------------------------------------------- common part ---- */
#include <math.h>
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

/* Index of the first entry of idx (out values) outside [0, rows), or -1 when all are valid. */
int64_t dg_check_index(const int64_t *idx, int64_t out, int64_t rows) {
    for (int64_t j = 0; j < out; j++)
        if (idx[j] < 0 || idx[j] >= rows) return j;
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
 * this file into itself: __FILE__ names it (the build compiles it from an absolute path). Per type:
 * DG_BITS/DG_MANT/DG_BIAS (the IEEE layout dg_exp builds 2^k from), DG_EXP_FLOOR (the smallest
 * exponent argument whose result is normal), DG_DEGREE (dg_exp's polynomial degree), DG_RINT. */
#define DG_T float
#define DG_SUFFIX f32
#define DG_BITS uint32_t
#define DG_MANT 23
#define DG_BIAS 127
#define DG_EXP_FLOOR (-87.0f)
#define DG_DEGREE 7 /* must be 7 or 13 (dg_exp) */
#define DG_RINT rintf
#include __FILE__
#undef DG_T
#undef DG_SUFFIX
#undef DG_BITS
#undef DG_MANT
#undef DG_BIAS
#undef DG_EXP_FLOOR
#undef DG_DEGREE
#undef DG_RINT
#define DG_T double
#define DG_SUFFIX f64
#define DG_BITS uint64_t
#define DG_MANT 52
#define DG_BIAS 1023
#define DG_EXP_FLOOR (-708.0)
#define DG_DEGREE 13
#define DG_RINT rint
#include __FILE__
#undef DG_T
#undef DG_SUFFIX
#undef DG_BITS
#undef DG_MANT
#undef DG_BIAS
#undef DG_EXP_FLOOR
#undef DG_DEGREE
#undef DG_RINT

#else /* -------------------------------------------------------- instantiated per DG_T ---- */
#define DG_FN(name) DG_CAT(name, DG_SUFFIX)

/* y (out, N) from x (in, N); conn (2, out): row 0 = a indices, row 1 = b; coeffs (out, 4), or
 * (rows, 4) read through idx (out,) when idx is non-NULL. */
int DG_FN(dg_forward)(const DG_T *restrict x, const DG_T *restrict coeffs, const int64_t *restrict conn,
                      const int64_t *restrict idx, DG_T *restrict y, int64_t n, int64_t in, int64_t out,
                      int nthreads) {
    const int64_t *ia = conn, *ib = conn + out;
    (void)in;
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j = 0; j < out; j++) {
        const DG_T *restrict a = x + ia[j] * n;
        const DG_T *restrict b = x + ib[j] * n;
        DG_T *restrict yj = y + j * n;
        const DG_T *cj = coeffs + 4 * (idx ? idx[j] : j);
        const DG_T c0 = cj[0], c1 = cj[1], c2 = cj[2], c3 = cj[3];
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
 * non-NULL and gc (rows, 4) when gc is non-NULL, where rows = out without idx. With idx, neuron j's
 * sums are added to row idx[j]. partial: scratch of (nthreads - 1) * rows * 4 values (thread 0
 * accumulates straight into gc). Returns 0. */
int DG_FN(dg_backward)(const DG_T *restrict g, const DG_T *restrict x, const DG_T *restrict coeffs,
                       const int64_t *restrict conn, const int64_t *restrict idx, DG_T *restrict gx,
                       DG_T *restrict gc, DG_T *restrict partial, int64_t n, int64_t in, int64_t out,
                       int64_t rows, int nthreads) {
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
        DG_T *mine = gc ? (t == 0 ? gc : partial + (int64_t)(t - 1) * rows * 4) : NULL;
        if (mine && idx) memset(mine, 0, (size_t)(rows * 4) * sizeof(DG_T)); /* rows are summed into */
        if (gx && i0 == 0 && i1 == n)
            memset(gx, 0, (size_t)(in * n) * sizeof(DG_T)); /* one thread owns every column */
        else if (gx && i1 > i0)
            for (int64_t r = 0; r < in; r++) memset(gx + r * n + i0, 0, (size_t)(i1 - i0) * sizeof(DG_T));
        for (int64_t j = 0; j < out; j++) {
            const int64_t r = idx ? idx[j] : j;
            const DG_T c1 = coeffs[4 * r + 1], c2 = coeffs[4 * r + 2], c3 = coeffs[4 * r + 3];
            const int64_t ra = ia[j] * n, rb = ib[j] * n;
            /* Without idx every row is written once: store straight into it; else sum into the row. */
            DG_T *s = mine && !idx ? mine + 4 * j : sums;
            if (ra != rb)
                DG_FN(dg_neuron_backward)(gx ? gx + ra : NULL, gx ? gx + rb : NULL, x + ra, x + rb, g + j * n,
                                          i0, i1, c1, c2, c3, s);
            else
                DG_FN(dg_self_backward)(gx ? gx + ra : NULL, x + ra, g + j * n, i0, i1, c1, c2, c3, s);
            if (mine && idx) {
                DG_T *dst = mine + 4 * r;
                dst[0] += sums[0]; dst[1] += sums[1]; dst[2] += sums[2]; dst[3] += sums[3];
            }
        }
        if (gc && nt > 1) {
#pragma omp barrier
#pragma omp for schedule(static)
            for (int64_t k = 0; k < rows * 4; k++) {
                DG_T s = gc[k];
                for (int u = 1; u < nt; u++) s += partial[(int64_t)(u - 1) * rows * 4 + k];
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

/* e^x for x <= 0 (the softmax's max-shifted logits), written so that a simd loop vectorises it
 * (libm's exp does not vectorise without -ffast-math): x = k ln2 + r with |r| <= ln2/2 (ln2 split in
 * a high and a low part, so k ln2 is exact enough), e^r by its Taylor polynomial of degree 7 (float)
 * or 13 (double), whose truncation error is below 0.05 ulp, and 2^k from its exponent bits. Arguments
 * below DG_EXP_FLOOR (-87 for float, -708 for double) return 0 rather than a denormal, whose
 * contribution next to the maximum's term 1 would vanish anyway. NaN stays NaN. */
static inline DG_T DG_FN(dg_exp)(DG_T arg) {
    const DG_T x = arg < DG_EXP_FLOOR ? (DG_T)DG_EXP_FLOOR : arg; /* keeps 2^k a normal number */
    /* round(x / ln2) through rint: with a plain cast (truncation) gcc 12 did not vectorise the loop. */
    const int32_t k = (int32_t)DG_RINT(x * (DG_T)1.44269504088896340736);
    const DG_T kf = (DG_T)k;
    const DG_T r = (x - kf * (DG_T)6.93145751953125e-1) - kf * (DG_T)1.42860682030941723212e-6;
    /* Horner's scheme written out (a loop here was not unrolled before vectorisation). */
    DG_T p = (DG_T)(1.0 / 5040);
#if DG_DEGREE == 13
    p = (DG_T)(1.0 / 6227020800.0);
    p = p * r + (DG_T)(1.0 / 479001600);
    p = p * r + (DG_T)(1.0 / 39916800);
    p = p * r + (DG_T)(1.0 / 3628800);
    p = p * r + (DG_T)(1.0 / 362880);
    p = p * r + (DG_T)(1.0 / 40320);
    p = p * r + (DG_T)(1.0 / 5040);
#endif
    p = p * r + (DG_T)(1.0 / 720);
    p = p * r + (DG_T)(1.0 / 120);
    p = p * r + (DG_T)(1.0 / 24);
    p = p * r + (DG_T)(1.0 / 6);
    p = p * r + (DG_T)0.5;
    p = p * r + 1;
    p = p * r + 1;
    const DG_BITS bits = (DG_BITS)(k + DG_BIAS) << DG_MANT;
    DG_T scale;
    memcpy(&scale, &bits, sizeof scale);
    /* A multiplication, not a select of 0: gcc 12 vectorises the loop only in this form. */
    const DG_T keep = arg >= DG_EXP_FLOOR ? 1 : 0;
    return p * scale * keep;
}

/* The softmax -> coefficients kernels work on blocks of DG_LANES neurons, transposed into local
 * gate-major tiles (t[g][lane]) so that every loop runs over the block's neurons with unit stride and
 * vectorises, dg_exp included; one neuron per iteration would leave the 16 logits' max, sum and four
 * dot products to horizontal reductions (measured 4-5x slower, 8000 neurons, float32, AVX-512). */
#define DG_LANES 16

/* Load neurons [j0, j0 + nl) of w (out, 16) into t as gate-major softmax probabilities (padding
 * lanes get logits 0, computed and never stored). */
static inline void DG_FN(dg_softmax_block)(const DG_T *restrict w, int64_t j0, int64_t nl,
                                           DG_T t[16][DG_LANES]) {
    DG_T m[DG_LANES], s[DG_LANES];
    if (nl == DG_LANES) /* whole blocks (all but the last): no per-element test */
        for (int64_t l = 0; l < DG_LANES; l++)
            for (int g = 0; g < 16; g++) t[g][l] = w[16 * (j0 + l) + g];
    else
        for (int64_t l = 0; l < DG_LANES; l++)
            for (int g = 0; g < 16; g++) t[g][l] = l < nl ? w[16 * (j0 + l) + g] : 0;
#pragma omp simd
    for (int l = 0; l < DG_LANES; l++) {
        m[l] = t[0][l];
        s[l] = 0;
    }
    for (int g = 1; g < 16; g++)
#pragma omp simd
        for (int l = 0; l < DG_LANES; l++) m[l] = t[g][l] > m[l] ? t[g][l] : m[l];
    for (int g = 0; g < 16; g++)
#pragma omp simd
        for (int l = 0; l < DG_LANES; l++) {
            t[g][l] = DG_FN(dg_exp)(t[g][l] - m[l]);
            s[l] += t[g][l];
        }
#pragma omp simd
    for (int l = 0; l < DG_LANES; l++) s[l] = 1 / s[l];
    for (int g = 0; g < 16; g++)
#pragma omp simd
        for (int l = 0; l < DG_LANES; l++) t[g][l] *= s[l];
}

/* c (out, 4) = softmax(w (out, 16)) @ COEFFS; table is COEFFS transposed, (4, 16). */
int DG_FN(dg_coefficients_forward)(const DG_T *restrict w, const DG_T *restrict table, DG_T *restrict c,
                                   int64_t out, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j0 = 0; j0 < out; j0 += DG_LANES) {
        const int64_t nl = DG_MIN(DG_LANES, out - j0);
        DG_T p[16][DG_LANES], acc[4][DG_LANES];
        DG_FN(dg_softmax_block)(w, j0, nl, p);
        for (int k = 0; k < 4; k++) {
#pragma omp simd
            for (int l = 0; l < DG_LANES; l++) acc[k][l] = 0;
            for (int g = 0; g < 16; g++) {
                const DG_T coef = table[16 * k + g];
#pragma omp simd
                for (int l = 0; l < DG_LANES; l++) acc[k][l] += p[g][l] * coef;
            }
        }
        for (int64_t l = 0; l < nl; l++)
            for (int k = 0; k < 4; k++) c[4 * (j0 + l) + k] = acc[k][l];
    }
    return 0;
}

/* gw (out, 16) = gradient of dg_coefficients_forward for gc (out, 4): with p = softmax(w) (recomputed,
 * cheaper than saving it) and gp = COEFFS @ gc (d loss / d p), gw = p (gp - <p, gp>). */
int DG_FN(dg_coefficients_backward)(const DG_T *restrict w, const DG_T *restrict table, const DG_T *restrict gc,
                                    DG_T *restrict gw, int64_t out, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j0 = 0; j0 < out; j0 += DG_LANES) {
        const int64_t nl = DG_MIN(DG_LANES, out - j0);
        DG_T p[16][DG_LANES], gct[4][DG_LANES], gp[16][DG_LANES], dot[DG_LANES];
        DG_FN(dg_softmax_block)(w, j0, nl, p);
        for (int64_t l = 0; l < DG_LANES; l++)
            for (int k = 0; k < 4; k++) gct[k][l] = nl == DG_LANES || l < nl ? gc[4 * (j0 + l) + k] : 0;
#pragma omp simd
        for (int l = 0; l < DG_LANES; l++) dot[l] = 0;
        for (int g = 0; g < 16; g++) {
            const DG_T t0 = table[g], t1 = table[16 + g], t2 = table[32 + g], t3 = table[48 + g];
#pragma omp simd
            for (int l = 0; l < DG_LANES; l++) {
                gp[g][l] = gct[0][l] * t0 + gct[1][l] * t1 + gct[2][l] * t2 + gct[3][l] * t3;
                dot[l] += p[g][l] * gp[g][l];
            }
        }
        for (int g = 0; g < 16; g++)
#pragma omp simd
            for (int l = 0; l < DG_LANES; l++) gp[g][l] = p[g][l] * (gp[g][l] - dot[l]);
        for (int64_t l = 0; l < nl; l++)
            for (int g = 0; g < 16; g++) gw[16 * (j0 + l) + g] = gp[g][l];
    }
    return 0;
}

/* The iwp / walsh parameter -> coefficient map (kernels/parametrizations.py), per neuron of w (out, 4):
 *     l = T w (entry logits; T = identity for iwp, the Walsh signs for walsh), p = sigmoid(l),
 *     c = E^T p (E = gates.ENTRY_COEFFS: row e holds the coefficients of entry e's indicator).
 * The tables come from Python (tt = T, row-major; et = E, row-major), so gates.py stays the one
 * definition of the entries. Blocks of DG_LANES neurons as the softmax kernels, for the same reason. */

/* sigmoid(l) for every lane: e^-|l| from dg_exp (which takes arguments <= 0), then 1/(1+e) or e/(1+e). */
static inline void DG_FN(dg_sigmoid_block)(const DG_T *restrict tt, const DG_T *restrict w, int64_t j0, int64_t nl,
                                           DG_T p[4][DG_LANES]) {
    DG_T v[4][DG_LANES];
    for (int64_t l = 0; l < DG_LANES; l++)
        for (int k = 0; k < 4; k++) v[k][l] = nl == DG_LANES || l < nl ? w[4 * (j0 + l) + k] : 0;
    for (int e = 0; e < 4; e++) {
        const DG_T t0 = tt[4 * e], t1 = tt[4 * e + 1], t2 = tt[4 * e + 2], t3 = tt[4 * e + 3];
#pragma omp simd
        for (int l = 0; l < DG_LANES; l++) {
            const DG_T z = t0 * v[0][l] + t1 * v[1][l] + t2 * v[2][l] + t3 * v[3][l];
            const DG_T ez = DG_FN(dg_exp)(z < 0 ? z : -z);
            const DG_T pos = z >= 0 ? 1 : 0; /* arithmetic blend: the form gcc vectorises (see dg_exp) */
            p[e][l] = (pos + (1 - pos) * ez) / (1 + ez);
        }
    }
}

/* c (out, 4) = E^T sigmoid(T w) per neuron. */
int DG_FN(dg_entry_coefficients_forward)(const DG_T *restrict w, const DG_T *restrict tt, const DG_T *restrict et,
                                         DG_T *restrict c, int64_t out, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j0 = 0; j0 < out; j0 += DG_LANES) {
        const int64_t nl = DG_MIN(DG_LANES, out - j0);
        DG_T p[4][DG_LANES], acc[4][DG_LANES];
        DG_FN(dg_sigmoid_block)(tt, w, j0, nl, p);
        for (int k = 0; k < 4; k++) {
            const DG_T e0 = et[k], e1 = et[4 + k], e2 = et[8 + k], e3 = et[12 + k];
#pragma omp simd
            for (int l = 0; l < DG_LANES; l++) acc[k][l] = e0 * p[0][l] + e1 * p[1][l] + e2 * p[2][l] + e3 * p[3][l];
        }
        for (int64_t l = 0; l < nl; l++)
            for (int k = 0; k < 4; k++) c[4 * (j0 + l) + k] = acc[k][l];
    }
    return 0;
}

/* gw (out, 4) = gradient of dg_entry_coefficients_forward for gc (out, 4): gp = E gc, gl = gp p (1 - p)
 * (p recomputed), gw = T^T gl. */
int DG_FN(dg_entry_coefficients_backward)(const DG_T *restrict w, const DG_T *restrict tt, const DG_T *restrict et,
                                          const DG_T *restrict gc, DG_T *restrict gw, int64_t out, int nthreads) {
    (void)nthreads;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j0 = 0; j0 < out; j0 += DG_LANES) {
        const int64_t nl = DG_MIN(DG_LANES, out - j0);
        DG_T p[4][DG_LANES], g[4][DG_LANES], gl[4][DG_LANES];
        DG_FN(dg_sigmoid_block)(tt, w, j0, nl, p);
        for (int64_t l = 0; l < DG_LANES; l++)
            for (int k = 0; k < 4; k++) g[k][l] = nl == DG_LANES || l < nl ? gc[4 * (j0 + l) + k] : 0;
        for (int e = 0; e < 4; e++) {
            const DG_T e0 = et[4 * e], e1 = et[4 * e + 1], e2 = et[4 * e + 2], e3 = et[4 * e + 3];
#pragma omp simd
            for (int l = 0; l < DG_LANES; l++)
                gl[e][l] = (e0 * g[0][l] + e1 * g[1][l] + e2 * g[2][l] + e3 * g[3][l]) * p[e][l] * (1 - p[e][l]);
        }
        for (int k = 0; k < 4; k++) {
            const DG_T t0 = tt[k], t1 = tt[4 + k], t2 = tt[8 + k], t3 = tt[12 + k];
#pragma omp simd
            for (int l = 0; l < DG_LANES; l++) g[k][l] = t0 * gl[0][l] + t1 * gl[1][l] + t2 * gl[2][l] + t3 * gl[3][l];
        }
        for (int64_t l = 0; l < nl; l++)
            for (int k = 0; k < 4; k++) gw[4 * (j0 + l) + k] = g[k][l];
    }
    return 0;
}

#undef DG_FN
#endif

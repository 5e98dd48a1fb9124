/* Fused CPU training kernel of LogicConv2d (C11 + OpenMP), optionally fused with the following max
 * (OR) pool; loaded by diffgates/kernels/tree_cpu.py, which runs it as the CPU implementation of the
 * torch custom ops diffgates::logic_tree_conv and diffgates::logic_tree_conv_backward.
 *
 * Built on first use by diffgates._native.open_library (cached by source hash, same flags as
 * cpu_kernel.c) and called through ctypes on torch tensors' data pointers. To inspect what the
 * compiler vectorised, build it by hand, e.g.
 *     gcc -O3 -std=c11 -fopenmp -mavx512f -mfma -shared -fPIC tree_kernel.c -o k.so -fopt-info-vec
 *
 * Math: output channel o is a complete binary tree of L = 2^d leaves and L - 1 gates. Node u of the
 * tree is leaf u for u < L and gate u - L otherwise; gate j reads nodes 2j and 2j + 1 (this numbering
 * is the gate order of LogicConv2d.weights: level 0 first, the root, gate L - 2, last). Gate j of
 * tree o computes, with c = coeffs[o (L - 1) + j] (the 4-coefficient form of diffgates.gates),
 *     y = c0 + c1 a + c2 b + c3 ab = fma(fma(c3, a, c2), b, fma(c1, a, c0)).
 * Leaf k = (ch, dy, dx) of the tree at conv position (i, j) reads the zero-padded input at
 * (ch, i stride + dy - pad, j stride + dx - pad): an out-of-range leaf reads 0 and gets no gradient.
 * With a pool of window (ph, pw) and stride (psh, psw), pooled output (pi, pj) is the max over the
 * window's conv positions (pi psh + wi, pj psw + wj), w = wi pw + wj in row-major order; the first
 * maximum wins ties and a NaN wins over numbers (torch's CPU max_pool2d). Forward stores the winner
 * w per output element (uint8); backward recomputes only the winning tree. Without a pool the same
 * code runs with a 1 x 1 window and stores no winners.
 * Backward, for incoming gradient g of a gate's output: dL/da = g (c1 + c3 b), dL/db = g (c2 + c3 a),
 * dL/dc += sum over the batch and all positions of g (1, a, b, ab). Every node but the root has one
 * reader, so the node gradients are assigned, not summed; the leaves' gradients are summed into the
 * input gradient (a leaf read twice, or input pixels shared by positions, add up).
 * The multiply-adds are explicit fma() where the target has FMA (-mfma), so the vector loop and its
 * scalar remainder round alike: every output and input-gradient element is bitwise the same for any
 * thread count and batch split.
 *
 * Memory layout: FEATURE-MAJOR, as cpu_kernel.c. x is (C H W, N), the output (out Hp Wp, N): one
 * leaf at one position is a contiguous row of N values. The batch is processed in chunks of
 * DG_CHUNK columns: per chunk the tree's intermediate gate values (and in backward their gradients)
 * live in small per-thread arrays that stay in L1 - the intermediate levels are never written out.
 *
 * Parallelisation:
 *   forward  - over output elements (o, pooled position): each thread writes whole output rows.
 *   backward - over the batch: each thread owns a slice of columns, so the input-gradient scatter
 *              (positions and leaves share pixels) needs no atomics. Coefficient gradients: per
 *              batch lane of a chunk (no horizontal sum per chunk), in DG_T for up to DG_FLUSH chunks,
 *              then in double; per tree the lanes are summed into the thread's partial buffer, and
 *              the partials are reduced in thread order (deterministic for a given thread count).
 *   With a pool, backward picks each column's winning leaves by selects over the window's rows and
 *   adds each window's leaf gradient where that window won: unit-stride vector loops throughout,
 *   no gathers or scatters.
 * The thread count is an argument (tree_cpu.py passes torch.get_num_threads(), fewer for small work).
 *
 * Everything the kernels index with - the leaves' channels and offsets, the geometry, the buffers'
 * shapes - is validated first: dg_tree_check_connections here, the rest in tree_cpu.py. The winners'
 * values need no check: one outside its window selects no leaf (zero gradient).
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

/* Batch columns per chunk, in backward and forward: small enough that a tree's node rows (and in
 * backward their gradients and coefficient-gradient lanes) stay in L1, large enough to amortise each
 * gate loop's set-up. Measured (LogicTreeNet-S layers, batch 512, float32): backward fastest at 64
 * (32 and 128: 10-30% slower), forward at 128 (64: 15% slower; it keeps only the gate values). */
#define DG_CHUNK 64
#define DG_FWD_CHUNK 128

/* The geometry array (int64, DG_GEOMETRY entries) both kernels take, filled by tree_cpu.py. */
enum {
    DG_N,       /* batch */
    DG_H,       /* input height */
    DG_W,       /* input width */
    DG_OUT,     /* trees (output channels) */
    DG_LEAVES,  /* leaves per tree, a power of two >= 2 */
    DG_STRIDE,  /* convolution stride */
    DG_PAD,     /* zero padding */
    DG_PH,      /* pool window height (1 without a pool) */
    DG_PW,      /* pool window width (1 without a pool) */
    DG_PSH,     /* pool stride, rows */
    DG_PSW,     /* pool stride, columns */
    DG_HP,      /* output height (pooled) */
    DG_WP,      /* output width (pooled) */
    DG_ROWS,    /* rows of x: C H W */
    DG_GEOMETRY
};

/* Flat index into conn (out, leaves, 3) of the first entry outside its range - channel in
 * [0, channels), dy in [0, kh), dx in [0, kw) - or -1 when all are valid. */
int64_t dg_tree_check_connections(const int64_t *conn, int64_t out, int64_t leaves, int64_t channels, int64_t kh,
                                  int64_t kw) {
    const int64_t limit[3] = {channels, kh, kw};
    for (int64_t k = 0; k < out * leaves * 3; k++)
        if (conn[k] < 0 || conn[k] >= limit[k % 3]) return k;
    return -1;
}

/* Offsets into x (element index of the leaf's row start, i.e. row * N) of every leaf of tree o in
 * every window position of pooled output (pi, pj): off[w * leaves + k], -1 for a leaf in the padding. */
static void dg_tree_offsets(const int64_t *restrict geo, const int64_t *restrict conn, int64_t o, int64_t pi,
                            int64_t pj, int64_t *restrict off) {
    const int64_t n = geo[DG_N], h = geo[DG_H], w = geo[DG_W], leaves = geo[DG_LEAVES];
    const int64_t stride = geo[DG_STRIDE], pad = geo[DG_PAD];
    const int64_t *leaf = conn + o * leaves * 3;
    for (int64_t wi = 0; wi < geo[DG_PH]; wi++)
        for (int64_t wj = 0; wj < geo[DG_PW]; wj++) {
            const int64_t r0 = (pi * geo[DG_PSH] + wi) * stride - pad, c0 = (pj * geo[DG_PSW] + wj) * stride - pad;
            int64_t *dst = off + (wi * geo[DG_PW] + wj) * leaves;
            for (int64_t k = 0; k < leaves; k++) {
                const int64_t r = r0 + leaf[3 * k + 1], c = c0 + leaf[3 * k + 2];
                dst[k] = r >= 0 && r < h && c >= 0 && c < w ? ((leaf[3 * k] * h + r) * w + c) * n : -1;
            }
        }
}

/* Whether the library was built with OpenMP (else every call runs on one thread). */
int dg_tree_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Per-thread scratch: one aligned block carved into 64-byte aligned pieces. */
static inline size_t dg_round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* The kernels below are written once over DG_T and instantiated for float and double by including
 * this file into itself (__FILE__ names it; the build compiles it from an absolute path). DG_FMA is
 * the fused multiply-add where the target has one (a libm call otherwise would be slow). */
#define DG_T float
#define DG_SUFFIX f32
#ifdef __FMA__
#define DG_FMA(a, b, c) fmaf(a, b, c)
#else
#define DG_FMA(a, b, c) ((a) * (b) + (c))
#endif
#include __FILE__
#undef DG_T
#undef DG_SUFFIX
#undef DG_FMA
#define DG_T double
#define DG_SUFFIX f64
#ifdef __FMA__
#define DG_FMA(a, b, c) fma(a, b, c)
#else
#define DG_FMA(a, b, c) ((a) * (b) + (c))
#endif
#include __FILE__
#undef DG_T
#undef DG_SUFFIX
#undef DG_FMA

#else /* -------------------------------------------------------- instantiated per DG_T ---- */
#define DG_FN(name) DG_CAT(name, DG_SUFFIX)

/* Gates [0, gates) of one tree over len columns. node[0, leaves) point at the leaves' values; gate j
 * writes vals + j pitch (the root, j = leaves - 2, writes root) and sets node[leaves + j] to it. */
static inline void DG_FN(dg_tree_gates)(const DG_T **node, DG_T *restrict vals, DG_T *restrict root,
                                        const DG_T *restrict c, int64_t leaves, int64_t gates, int64_t len,
                                        int64_t pitch) {
    for (int64_t j = 0; j < gates; j++) {
        DG_T *restrict y = j == leaves - 2 ? root : vals + j * pitch;
        const DG_T *restrict a = node[2 * j], *restrict b = node[2 * j + 1]; /* may alias: both only read */
        const DG_T c0 = c[4 * j], c1 = c[4 * j + 1], c2 = c[4 * j + 2], c3 = c[4 * j + 3];
#pragma omp simd
        for (int64_t i = 0; i < len; i++) y[i] = DG_FMA(DG_FMA(c3, a[i], c2), b[i], DG_FMA(c1, a[i], c0));
        node[leaves + j] = y;
    }
}

/* y (out Hp Wp, N) from x (C H W, N); win (out Hp Wp, N) the winning window index when non-NULL
 * (a pool). coeffs (out (leaves - 1), 4), conn (out, leaves, 3). Returns 0, or 1 when out of memory. */
int DG_FN(dg_tree_forward)(const DG_T *restrict x, const DG_T *restrict coeffs, const int64_t *restrict conn,
                           DG_T *restrict y, uint8_t *restrict win, const int64_t *restrict geo, int nthreads) {
    const int64_t n = geo[DG_N], leaves = geo[DG_LEAVES], window = geo[DG_PH] * geo[DG_PW];
    const int64_t positions = geo[DG_HP] * geo[DG_WP], elements = geo[DG_OUT] * positions;
    /* Per thread: gate values, the winner indices as DG_T (compared at the data's width, so the merge
     * vectorises), zeros for leaves in the padding, a window tree's root; then offsets and node pointers. */
    const size_t values = dg_round64((size_t)(leaves + 2) * DG_FWD_CHUNK * sizeof(DG_T));
    const size_t offsets = dg_round64((size_t)(window * leaves) * sizeof(int64_t));
    const size_t per_thread = values + offsets + dg_round64((size_t)(2 * leaves) * sizeof(DG_T *));
    char *scratch = aligned_alloc(64, per_thread * (size_t)nthreads);
    if (!scratch) return 1;
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        char *mine = scratch + per_thread * (size_t)omp_get_thread_num();
#else
        char *mine = scratch;
#endif
        DG_T *vals = (DG_T *)mine, *best = vals + (leaves - 1) * DG_FWD_CHUNK;
        DG_T *zeros = best + DG_FWD_CHUNK, *rootv = zeros + DG_FWD_CHUNK;
        int64_t *off = (int64_t *)(mine + values);
        const DG_T **node = (const DG_T **)(mine + values + offsets);
        memset(zeros, 0, DG_FWD_CHUNK * sizeof(DG_T));
#pragma omp for schedule(static)
        for (int64_t e = 0; e < elements; e++) {
            const int64_t o = e / positions, p = e % positions;
            const DG_T *c = coeffs + o * (leaves - 1) * 4;
            dg_tree_offsets(geo, conn, o, p / geo[DG_WP], p % geo[DG_WP], off);
            for (int64_t n0 = 0; n0 < n; n0 += DG_FWD_CHUNK) {
                const int64_t len = DG_MIN(DG_FWD_CHUNK, n - n0);
                DG_T *restrict yo = y + e * n + n0;
                if (window > 1) memset(best, 0, DG_FWD_CHUNK * sizeof(DG_T)); /* window 0 until beaten */
                for (int64_t w = 0; w < window; w++) {
                    for (int64_t k = 0; k < leaves; k++) {
                        const int64_t at = off[w * leaves + k];
                        node[k] = at >= 0 ? x + at + n0 : zeros;
                    }
                    /* Window 0 writes the output directly; the others are merged into it. */
                    DG_FN(dg_tree_gates)(node, vals, w ? rootv : yo, c, leaves, leaves - 1, len, DG_FWD_CHUNK);
                    if (!w) continue;
                    const DG_T wf = (DG_T)w;
#pragma omp simd
                    for (int64_t i = 0; i < len; i++) {
                        const DG_T r = rootv[i], m = yo[i];
                        const int take = r > m || r != r; /* strictly greater (first max wins), or NaN */
                        yo[i] = take ? r : m;
                        best[i] = take ? wf : best[i];
                    }
                }
                if (win) {
                    uint8_t *restrict wo = win + e * n + n0;
                    if (window == 1)
                        memset(wo, 0, (size_t)len);
                    else
                        for (int64_t i = 0; i < len; i++) wo[i] = (uint8_t)best[i];
                }
            }
        }
    }
    free(scratch);
    return 0;
}

/* Backward through one gate over len columns: go = dL/d(its output), a and b its inputs; writes the
 * inputs' gradients ga, gb (NULL: not needed) and adds the coefficient-gradient terms (go, go a, go b,
 * go ab) to the four lane rows s, s + DG_CHUNK, ... (NULL: not needed). Lane accumulators, not a
 * reduction per chunk: a chunk's 4 horizontal sums per gate cost more than the gate itself. */
static inline void DG_FN(dg_gate_backward)(const DG_T *restrict go, const DG_T *restrict a, const DG_T *restrict b,
                                           DG_T *restrict ga, DG_T *restrict gb, const DG_T *restrict c,
                                           DG_T *restrict s, int64_t len) {
    const DG_T c1 = c[1], c2 = c[2], c3 = c[3];
    DG_T *restrict s0 = s, *restrict s1 = s + DG_CHUNK, *restrict s2 = s + 2 * DG_CHUNK, *restrict s3 = s + 3 * DG_CHUNK;
    if (ga && s) {
#pragma omp simd
        for (int64_t i = 0; i < len; i++) {
            const DG_T gi = go[i], ai = a[i], bi = b[i], gai = gi * ai;
            ga[i] = gi * DG_FMA(c3, bi, c1);
            gb[i] = gi * DG_FMA(c3, ai, c2);
            s0[i] += gi; s1[i] += gai; s2[i] += gi * bi; s3[i] += gai * bi;
        }
    } else if (ga) {
#pragma omp simd
        for (int64_t i = 0; i < len; i++) {
            ga[i] = go[i] * DG_FMA(c3, b[i], c1);
            gb[i] = go[i] * DG_FMA(c3, a[i], c2);
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < len; i++) {
            const DG_T gi = go[i], ai = a[i], bi = b[i], gai = gi * ai;
            s0[i] += gi; s1[i] += gai; s2[i] += gi * bi; s3[i] += gai * bi;
        }
    }
}

/* Chunks summed into the DG_T lane accumulators before they are added to the double ones: a lane then
 * sums at most this many float terms, so the coefficient gradients keep float's precision per term
 * however large the layer (at this interval the flushes cost nothing measurable). */
#define DG_FLUSH 64

/* wide += lane, lane = 0 (both of count values). */
static inline void DG_FN(dg_flush)(double *restrict wide, DG_T *restrict lane, int64_t count) {
#pragma omp simd
    for (int64_t i = 0; i < count; i++) {
        wide[i] += lane[i];
        lane[i] = 0;
    }
}

/* dg_tree_backward's per-thread scratch (see there). */
typedef struct {
    DG_T *vals, *leaf, *grads, *zeros, *wf, *lane; /* lane: NULL when no coefficient gradient is wanted */
    int64_t *off;
    const DG_T **node;
} DG_FN(dg_scratch);

/* Backward of one tree over batch columns [n0, n0 + len) of one output element: go its output's
 * gradient, wo its winners (NULL: no pool, or a 1 x 1 window), s->off its leaf offsets. Adds the
 * leaves' gradients to gx (when non-NULL) and the coefficient terms to s->lane (when non-NULL). */
static inline void DG_FN(dg_backward_chunk)(const DG_FN(dg_scratch) *s, const DG_T *restrict x,
                                            const DG_T *restrict go, const uint8_t *restrict wo, DG_T *restrict gx,
                                            const DG_T *restrict c, int64_t leaves, int64_t window, int64_t n0,
                                            int64_t len) {
    const int64_t *off = s->off;
    const DG_T **node = s->node;
    DG_T *restrict wf = s->wf;
    if (wo) {
        for (int64_t i = 0; i < len; i++) wf[i] = (DG_T)wo[i];
        /* Leaf k of column i is the leaf in window wf[i]: a select over the window's rows, four
         * windows per pass (one store per pass, not one per window). */
        for (int64_t k = 0; k < leaves; k++) {
            DG_T *lk = s->leaf + k * DG_CHUNK;
            for (int64_t w0 = 0; w0 < window; w0 += 4) {
                const DG_T *src[4];
                DG_T id[4];
                for (int q = 0; q < 4; q++) {
                    const int64_t w = w0 + q, at = w < window ? off[w * leaves + k] : -1;
                    src[q] = at >= 0 ? x + at + n0 : s->zeros; /* a leaf in the padding reads 0 */
                    id[q] = w < window ? (DG_T)w : -1;
                }
                const DG_T *prev = w0 ? lk : s->zeros, *r0 = src[0], *r1 = src[1], *r2 = src[2], *r3 = src[3];
                const DG_T d0 = id[0], d1 = id[1], d2 = id[2], d3 = id[3];
#pragma omp simd
                for (int64_t i = 0; i < len; i++) {
                    const DG_T v = wf[i];
                    lk[i] = v == d0 ? r0[i] : v == d1 ? r1[i] : v == d2 ? r2[i] : v == d3 ? r3[i] : prev[i];
                }
            }
            node[k] = lk;
        }
    } else
        for (int64_t k = 0; k < leaves; k++) node[k] = off[k] >= 0 ? x + off[k] + n0 : s->zeros;
    DG_FN(dg_tree_gates)(node, s->vals, NULL, c, leaves, leaves - 2, len, DG_CHUNK); /* the root's value is unused */
    for (int64_t j = leaves - 2; j >= 0; j--) {
        const DG_T *gj = j == leaves - 2 ? go : s->grads + (leaves + j) * DG_CHUNK;
        const int inputs = gx || 2 * j >= leaves; /* a leaf's gradient only feeds gx */
        DG_FN(dg_gate_backward)(gj, node[2 * j], node[2 * j + 1], inputs ? s->grads + 2 * j * DG_CHUNK : NULL,
                                inputs ? s->grads + (2 * j + 1) * DG_CHUNK : NULL, c + 4 * j,
                                s->lane ? s->lane + j * 4 * DG_CHUNK : NULL, len);
    }
    if (!gx) return;
    for (int64_t k = 0; k < leaves; k++) {
        const DG_T *restrict gk = s->grads + k * DG_CHUNK;
        /* Each window's leaf row gets the gradient of the columns that window won. */
        for (int64_t w = 0; w < (wo ? window : 1); w++) {
            const int64_t at = off[w * leaves + k];
            if (at < 0) continue;
            DG_T *restrict dst = gx + at + n0;
            if (!wo) {
#pragma omp simd
                for (int64_t i = 0; i < len; i++) dst[i] += gk[i];
                continue;
            }
            const DG_T ww = (DG_T)w;
#pragma omp simd
            for (int64_t i = 0; i < len; i++) dst[i] += wf[i] == ww ? gk[i] : 0;
        }
    }
}

/* Gradients of dg_tree_forward for g (out Hp Wp, N): gx (C H W, N) when non-NULL, gc (out (leaves - 1), 4)
 * when non-NULL. win as forward's (NULL: no pool). Returns 0, or 1 when out of memory. */
int DG_FN(dg_tree_backward)(const DG_T *restrict g, const DG_T *restrict x, const DG_T *restrict coeffs,
                            const int64_t *restrict conn, const uint8_t *restrict win, DG_T *restrict gx,
                            DG_T *restrict gc, const int64_t *restrict geo, int nthreads) {
    const int64_t n = geo[DG_N], leaves = geo[DG_LEAVES], window = geo[DG_PH] * geo[DG_PW];
    const int64_t positions = geo[DG_HP] * geo[DG_WP], elements = geo[DG_OUT] * positions;
    const int64_t rows = geo[DG_OUT] * (leaves - 1), in_rows = geo[DG_ROWS], lanes = (leaves - 1) * 4 * DG_CHUNK;
    const int gather = win && window > 1; /* each column's winner picks its own leaf rows */
    /* Per thread: gate values (all but the root's), gathered leaves, node gradients (all but the
     * root's: the incoming g), zeros, the winners as DG_T, the tree's coefficient-gradient lanes in
     * DG_T and in double; leaf offsets; node pointers; the thread's coefficient-gradient sums. */
    const size_t values = dg_round64((size_t)((4 * leaves + 2) * DG_CHUNK + (gc ? lanes : 0)) * sizeof(DG_T));
    const size_t wide = dg_round64((size_t)(gc ? lanes : 0) * sizeof(double));
    const size_t offsets = dg_round64((size_t)(window * leaves) * sizeof(int64_t));
    const size_t pointers = dg_round64((size_t)(2 * leaves) * sizeof(DG_T *));
    const size_t sums = dg_round64((size_t)(gc ? rows * 4 : 0) * sizeof(double));
    const size_t at_sums = values + wide + offsets + pointers, per_thread = at_sums + sums;
    char *scratch = aligned_alloc(64, per_thread * (size_t)nthreads);
    if (!scratch) return 1;
    /* Column slices start on 64-byte boundaries where the batch is large enough, so two threads never
     * write the same cache line of gx; for small batches a balanced split matters more. */
    const int64_t line = 64 / (int64_t)sizeof(DG_T);
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        char *mine = scratch + per_thread * (size_t)t;
        DG_FN(dg_scratch) tmp;
        tmp.vals = (DG_T *)mine;
        tmp.leaf = tmp.vals + leaves * DG_CHUNK;
        tmp.grads = tmp.leaf + leaves * DG_CHUNK;
        tmp.zeros = tmp.grads + 2 * leaves * DG_CHUNK;
        tmp.wf = tmp.zeros + DG_CHUNK;
        tmp.lane = gc ? tmp.wf + DG_CHUNK : NULL;
        tmp.off = (int64_t *)(mine + values + wide);
        tmp.node = (const DG_T **)(mine + values + wide + offsets);
        DG_T *lane = tmp.lane;
        double *wide_lane = (double *)(mine + values);
        double *acc = (double *)(mine + at_sums);
        int64_t chunk = (n + nt - 1) / nt;
        if (n >= 8 * line * nt) chunk = (chunk + line - 1) / line * line;
        const int64_t i0 = DG_MIN(n, chunk * t), i1 = DG_MIN(n, chunk * (t + 1));
        int64_t pending = 0; /* chunks in the DG_T lanes since their last flush */
        memset(tmp.zeros, 0, DG_CHUNK * sizeof(DG_T));
        if (gc) {
            memset(acc, 0, (size_t)(rows * 4) * sizeof(double));
            memset(lane, 0, (size_t)lanes * sizeof(DG_T));
            memset(wide_lane, 0, (size_t)lanes * sizeof(double));
        }
        if (gx && i1 > i0)
            for (int64_t r = 0; r < in_rows; r++) memset(gx + r * n + i0, 0, (size_t)(i1 - i0) * sizeof(DG_T));
        /* Per output element, the thread's columns chunk by chunk: each leaf row is then read (and its
         * gradient written) as one sequential stream, which the hardware prefetcher follows; taking
         * the positions inside the chunks instead (more reuse in L2, but 256-byte pieces of scattered
         * rows) measured 1.1-1.5x slower. */
        for (int64_t e = 0; e < elements && i1 > i0; e++) {
            const int64_t o = e / positions, p = e % positions;
            const DG_T *c = coeffs + o * (leaves - 1) * 4;
            dg_tree_offsets(geo, conn, o, p / geo[DG_WP], p % geo[DG_WP], tmp.off);
            for (int64_t n0 = i0; n0 < i1; n0 += DG_CHUNK) {
                const int64_t len = DG_MIN(DG_CHUNK, i1 - n0);
                /* A constant length for whole chunks lets the compiler drop the loops' remainders
                 * (measured 10-15% of backward). */
                if (len == DG_CHUNK)
                    DG_FN(dg_backward_chunk)(&tmp, x, g + e * n + n0, gather ? win + e * n + n0 : NULL, gx, c, leaves,
                                             window, n0, DG_CHUNK);
                else
                    DG_FN(dg_backward_chunk)(&tmp, x, g + e * n + n0, gather ? win + e * n + n0 : NULL, gx, c, leaves,
                                             window, n0, len);
                if (gc && ++pending == DG_FLUSH) {
                    DG_FN(dg_flush)(wide_lane, lane, lanes);
                    pending = 0;
                }
            }
            if (gc && (e + 1 == elements || (e + 1) / positions != o)) {
                /* Tree o is done: its lanes, summed in a fixed order, are its coefficient gradients. */
                DG_FN(dg_flush)(wide_lane, lane, lanes);
                pending = 0;
                for (int64_t r = 0; r < (leaves - 1) * 4; r++) {
                    double total = 0;
                    for (int64_t i = 0; i < DG_CHUNK; i++) total += wide_lane[r * DG_CHUNK + i];
                    acc[o * (leaves - 1) * 4 + r] = total;
                }
                memset(wide_lane, 0, (size_t)lanes * sizeof(double));
            }
        }
        if (gc) {
#pragma omp barrier
#pragma omp for schedule(static)
            for (int64_t k = 0; k < rows * 4; k++) {
                double total = 0;
                for (int u = 0; u < nt; u++) total += ((const double *)(scratch + per_thread * (size_t)u + at_sums))[k];
                gc[k] = (DG_T)total;
            }
        }
    }
    free(scratch);
    return 0;
}

#undef DG_FN
#endif

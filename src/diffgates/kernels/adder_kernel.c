/* Fused CPU kernel of the AdderNet similarity (C11 + OpenMP); loaded by diffgates/kernels/adder.py.
 *
 * Built on first use by diffgates._native.open_library (cached by source hash, the flags of
 * cpu_kernel.c) and called through ctypes on torch tensors' data pointers. To see what the compiler
 * vectorised, build it by hand, e.g.
 *     gcc -O3 -std=c11 -fopenmp -mavx512f -mfma -shared -fPIC adder_kernel.c -o k.so -fopt-info-vec
 *
 * Math, for rows a (M, K) (a dense layer's inputs, or a convolution's unfolded patches) and weights
 * w (O, K), all row-major:
 *     forward      y[i, o]  = -sum_k |a[i, k] - w[o, k]|
 *     input grad   da[i, k] =  sum_o g[i, o] clamp(w[o, k] - a[i, k], -1, 1)   (AdderNet's HardTanh)
 * The weight gradient (x - w, full precision) is a matrix product, computed by the caller with torch.
 * Nothing of size M x O x K is ever stored: each output is one pass over two rows of K values.
 *
 * Blocking: DG_ROWS rows of a at a time share every load of a weight row (forward) or of g's row
 * entries (input gradient); the rows' K values stay in L1. Parallelisation: over blocks of rows, each
 * thread writing whole rows of y / da, so no atomics. Every output element is summed in the same
 * order whatever the thread count: results are bitwise the same for any number of threads.
 */
#include <stdint.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DG_ROWS 4

int dg_adder_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define DG_DEFINE_ADDER(T, SUFFIX, ABS)                                                                  \
int dg_adder_forward_##SUFFIX(const T *restrict a, const T *restrict w, T *restrict y, int64_t m,       \
                              int64_t k, int64_t o, int threads) {                                       \
    int64_t blocks = (m + DG_ROWS - 1) / DG_ROWS;                                                        \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                                    \
    for (int64_t b = 0; b < blocks; ++b) {                                                               \
        int64_t i0 = b * DG_ROWS;                                                                        \
        if (i0 + DG_ROWS <= m) {                                                                         \
            const T *a0 = a + i0 * k, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k;                          \
            for (int64_t j = 0; j < o; ++j) {                                                            \
                const T *wj = w + j * k;                                                                 \
                T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                        \
                _Pragma("omp simd reduction(+:s0,s1,s2,s3)")                                             \
                for (int64_t t = 0; t < k; ++t) {                                                        \
                    T wt = wj[t];                                                                        \
                    s0 += ABS(a0[t] - wt); s1 += ABS(a1[t] - wt);                                        \
                    s2 += ABS(a2[t] - wt); s3 += ABS(a3[t] - wt);                                        \
                }                                                                                        \
                y[i0 * o + j] = -s0; y[(i0 + 1) * o + j] = -s1;                                          \
                y[(i0 + 2) * o + j] = -s2; y[(i0 + 3) * o + j] = -s3;                                    \
            }                                                                                            \
        } else { /* the last rows, fewer than DG_ROWS: one at a time */                                  \
            for (int64_t i = i0; i < m; ++i) {                                                           \
                const T *ai = a + i * k;                                                                 \
                for (int64_t j = 0; j < o; ++j) {                                                        \
                    const T *wj = w + j * k;                                                             \
                    T s = 0;                                                                             \
                    _Pragma("omp simd reduction(+:s)")                                                   \
                    for (int64_t t = 0; t < k; ++t) s += ABS(ai[t] - wj[t]);                             \
                    y[i * o + j] = -s;                                                                   \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
    return 0;                                                                                            \
}                                                                                                        \
                                                                                                         \
int dg_adder_grad_input_##SUFFIX(const T *restrict g, const T *restrict a, const T *restrict w,          \
                                 T *restrict da, int64_t m, int64_t k, int64_t o, int threads) {         \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                                    \
    for (int64_t i = 0; i < m; ++i) {                                                                    \
        const T *ai = a + i * k;                                                                         \
        T *di = da + i * k;                                                                              \
        for (int64_t t = 0; t < k; ++t) di[t] = 0;                                                       \
        for (int64_t j = 0; j < o; ++j) {                                                                \
            const T gj = g[i * o + j];                                                                   \
            if (gj == 0) continue; /* why: ReLU and max-pool zero many output gradients */               \
            const T *wj = w + j * k;                                                                     \
            _Pragma("omp simd")                                                                          \
            for (int64_t t = 0; t < k; ++t) {                                                            \
                T d = wj[t] - ai[t];                                                                     \
                d = d > 1 ? 1 : (d < -1 ? -1 : d);                                                       \
                di[t] += gj * d;                                                                         \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
    return 0;                                                                                            \
}

DG_DEFINE_ADDER(float, f32, fabsf)
DG_DEFINE_ADDER(double, f64, fabs)

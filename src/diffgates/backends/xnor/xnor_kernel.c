/* XNOR-popcount inference of a binary network (diffgates.backends.xnor), one image at a time.
 *
 * Activations are packed along features into 64-bit words: a (C, H, W) map position-major, each
 * position ceil(C/64) words (bit c of word c/64); a vector ceil(F/64) words. Padding bits are 0 in
 * activations and weights alike, so they never count: agreements = K - popcount(x XOR w) over the K
 * real bits. A convolution gathers each window into a dense row of C*kh*kw bits (tap-major: bit
 * (dy*kw + dx)*C + c), the weights having been packed the same way (engine.py). Layer descriptors are
 * DG_DESC int64 values each, in the order of the enum below. Build flags pick the popcount:
 * -DDG_AVX512 (AVX-512 VPOPCNTDQ, 8 words per instruction), otherwise __builtin_popcountll (the
 * POPCNT instruction with -mpopcnt, a software count without).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef DG_AVX512
#include <immintrin.h>
#endif

enum { D_TYPE, D_IN_H, D_IN_W, D_IN_C, D_IN_CW, D_OUT_H, D_OUT_W, D_OUT_C, D_OUT_CW, D_KH, D_KW, D_SH, D_SW,
       D_ROW_WORDS, D_W_OFF, D_T_OFF, D_K, DG_DESC };
enum { T_CONV = 0, T_POOL = 1, T_DENSE = 2, T_OUTPUT = 3 };

static inline int64_t xor_pop(const uint64_t *a, const uint64_t *b, int64_t n) {
#ifdef DG_AVX512
    __m512i acc = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + i),
                                                                         _mm512_loadu_si512(b + i))));
    if (i < n) {
        __mmask8 m = (__mmask8)((1u << (n - i)) - 1u);
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(m, a + i),
                                                                         _mm512_maskz_loadu_epi64(m, b + i))));
    }
    return _mm512_reduce_add_epi64(acc);
#else
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += __builtin_popcountll(a[i] ^ b[i]);
    return c;
#endif
}

/* OR nbits bits of src (whole words, padding bits 0) into dst starting at bit offset off. */
static inline void copy_bits(uint64_t *dst, int64_t off, const uint64_t *src, int64_t nbits) {
    int64_t words = (nbits + 63) >> 6;
    int s = (int)(off & 63);
    uint64_t *d = dst + (off >> 6);
    if (s == 0) {
        for (int64_t i = 0; i < words; i++) d[i] |= src[i];
        return;
    }
    for (int64_t i = 0; i < words; i++) {
        d[i] |= src[i] << s;
        d[i + 1] |= src[i] >> (64 - s);
    }
}

static void run_image(const int64_t *desc, int n_layers, const uint64_t *weights, const int32_t *thr,
                      const uint64_t *input, int32_t *scores, uint64_t *buf_a, uint64_t *buf_b, uint64_t *row) {
    const uint64_t *in = input;
    uint64_t *out = buf_a;
    for (int l = 0; l < n_layers; l++) {
        const int64_t *d = desc + (int64_t)l * DG_DESC;
        const uint64_t *w = weights + d[D_W_OFF];
        const int32_t *t = thr + d[D_T_OFF];
        int64_t K = d[D_K], rw = d[D_ROW_WORDS];
        if (d[D_TYPE] == T_CONV) {
            int64_t cw = d[D_IN_CW], ocw = d[D_OUT_CW], C = d[D_IN_C], O = d[D_OUT_C];
            for (int64_t oy = 0; oy < d[D_OUT_H]; oy++)
                for (int64_t ox = 0; ox < d[D_OUT_W]; ox++) {
                    memset(row, 0, (size_t)(rw + 1) * sizeof(uint64_t));
                    for (int64_t dy = 0; dy < d[D_KH]; dy++)
                        for (int64_t dx = 0; dx < d[D_KW]; dx++) {
                            const uint64_t *src = in + ((oy * d[D_SH] + dy) * d[D_IN_W] + ox * d[D_SW] + dx) * cw;
                            copy_bits(row, (dy * d[D_KW] + dx) * C, src, C);
                        }
                    uint64_t *dst = out + (oy * d[D_OUT_W] + ox) * ocw;
                    memset(dst, 0, (size_t)ocw * sizeof(uint64_t));
                    for (int64_t o = 0; o < O; o++)  /* branch-free: a trained net's bits are coin flips */
                        dst[o >> 6] |= (uint64_t)(K - xor_pop(row, w + o * rw, rw) >= t[o]) << (o & 63);
                }
        } else if (d[D_TYPE] == T_POOL) {
            int64_t cw = d[D_IN_CW];
            for (int64_t oy = 0; oy < d[D_OUT_H]; oy++)
                for (int64_t ox = 0; ox < d[D_OUT_W]; ox++) {
                    uint64_t *dst = out + (oy * d[D_OUT_W] + ox) * cw;
                    memset(dst, 0, (size_t)cw * sizeof(uint64_t));
                    for (int64_t dy = 0; dy < d[D_KH]; dy++)
                        for (int64_t dx = 0; dx < d[D_KW]; dx++) {
                            const uint64_t *src = in + ((oy * d[D_SH] + dy) * d[D_IN_W] + ox * d[D_SW] + dx) * cw;
                            for (int64_t i = 0; i < cw; i++) dst[i] |= src[i];
                        }
                }
        } else if (d[D_TYPE] == T_DENSE) {
            int64_t O = d[D_OUT_C];
            memset(out, 0, (size_t)((O + 63) >> 6) * sizeof(uint64_t));
            for (int64_t o = 0; o < O; o++)
                out[o >> 6] |= (uint64_t)(K - xor_pop(in, w + o * rw, rw) >= t[o]) << (o & 63);
        } else {
            for (int64_t k = 0; k < d[D_OUT_C]; k++) scores[k] = (int32_t)(K - xor_pop(in, w + k * rw, rw));
            return;
        }
        in = out;
        out = (out == buf_a) ? buf_b : buf_a;
    }
}

typedef struct {
    const int64_t *desc; int n_layers; const uint64_t *weights; const int32_t *thr;
    const uint64_t *input; int64_t in_words; int32_t *scores; int64_t n_classes; int64_t buf_words;
    int64_t start, end; int status;
} job_t;

static void *run_range(void *arg) {
    job_t *j = (job_t *)arg;
    uint64_t *mem = (uint64_t *)calloc((size_t)(3 * j->buf_words + 8), sizeof(uint64_t));
    if (!mem) { j->status = 1; return NULL; }
    for (int64_t i = j->start; i < j->end; i++)
        run_image(j->desc, j->n_layers, j->weights, j->thr, j->input + i * j->in_words, j->scores + i * j->n_classes,
                  mem, mem + j->buf_words, mem + 2 * j->buf_words);
    free(mem);
    j->status = 0;
    return NULL;
}

/* Scores of n images; returns 0, or 1 when memory or a thread could not be had. */
int dg_xnor_run(const int64_t *desc, int n_layers, const uint64_t *weights, const int32_t *thr,
                const uint64_t *input, int64_t in_words, int64_t n, int32_t *scores, int64_t n_classes,
                int64_t buf_words, int threads) {
    if (threads < 1) threads = 1;
    if (threads > n) threads = n > 0 ? (int)n : 1;
    job_t jobs[256];
    pthread_t ids[256];
    if (threads > 256) threads = 256;
    int64_t per = (n + threads - 1) / threads;
    for (int i = 0; i < threads; i++) {
        int64_t s = i * per, e = s + per < n ? s + per : n;
        jobs[i] = (job_t){desc, n_layers, weights, thr, input, in_words, scores, n_classes, buf_words,
                          s < n ? s : n, e, 0};
    }
    int started = 0, status = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&ids[i], NULL, run_range, &jobs[i]) != 0) { status = 1; break; }
        started = i;
    }
    run_range(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(ids[i], NULL);
    for (int i = 0; i <= started; i++) status |= jobs[i].status;
    return status;
}

"""C source generation for a lowered circuit (``c_program.Program``): one emitter, several word types.

Used by the compiled engine (``diffgates.engines.c``) and by the standalone export
(``diffgates.export.c``); both get the same gate code, packing and unpacking, so the bit-exact tests of
the engine also vouch for the exported file.

Word types (``ISAS``): ``u64`` is plain C99 on ``uint64_t`` (64 samples per word, any compiler);
``avx2`` / ``avx512`` use GCC/clang vector extensions (``vector_size(32)`` / ``(64)``: 256 / 512
samples per word) compiled with ``-mavx2`` / ``-mavx512f``. Gate expressions come from
``diffgates.gates.GATES[op].formula`` only.

Layout of the generated file (every function ``static`` except the entry points):

* one scratch buffer ``w`` per block: the input words, then the live-value slots (``c_program``);
* ``dg_group_sum`` adds a class's output words into the bit planes of its count with a Harley-Seal
  carry-save tree (about 6 word operations per output);
* "code" layout: ``PREFIX_group_C`` tables (byte offsets of each class's output words) and
  ``PREFIX_chunk_K`` functions of ``chunk_size`` gate steps each, never inlined (the compiler sees
  many small functions, not one giant one: build time stays linear in the gate count);
* "table" layout: ``dg_exec`` runs the step table (``c_program.encode_table``) with one tight loop
  per gate type; the table is data: a pointer argument of the engine, a static array in an export;
* ``dg_pack_block``: 0/1 bytes, one row per sample, -> one word per input feature: 8 samples are
  OR-ed into the bits of each byte (a shift and an OR per 8 bytes), then an 8x8 byte transpose inside
  every 64-bit lane yields each feature's word;
* ``dg_unpack``: the count bit planes -> int32 counts, 16 samples per vector step (vector ISAs);
* entry points: ``dg_counts``/``dg_counts_packed``/``dg_pack`` with a thread count (engine, OpenMP
  or POSIX threads), or the export's single-threaded API (``diffgates.export.c``).

Sample ``j`` of a block is bit ``j % 64`` of 64-bit lane ``j // 64`` of a word.
"""
from __future__ import annotations

from dataclasses import dataclass
from string import Template

from .. import gates
from .c_program import GROUP_SUM, LOCAL, Program


@dataclass(frozen=True)
class Isa:
    """A word type the generator can emit."""

    name: str
    lanes: int  # 64-bit lanes per word: samples per block = 64 * lanes
    flags: tuple[str, ...]  # compiler flags this word type needs
    cpu_features: tuple[str, ...]  # names for __builtin_cpu_supports (empty: runs on any CPU)

    @property
    def block(self) -> int:
        return 64 * self.lanes


ISAS: dict[str, Isa] = {
    "u64": Isa("u64", 1, (), ()),
    "avx2": Isa("avx2", 4, ("-mavx2",), ("avx2",)),
    "avx512": Isa("avx512", 8, ("-mavx512f",), ("avx512f",)),
}
ISA_ALIASES = {"portable": "u64", "scalar": "u64"}


def get_isa(name: str) -> Isa:
    """The Isa called ``name`` ('u64' alias 'portable', 'avx2', 'avx512'); ValueError otherwise."""
    key = ISA_ALIASES.get(name, name)
    if key not in ISAS:
        raise ValueError(f"isa={name!r} is not known; expected one of {sorted(ISAS) + sorted(ISA_ALIASES)} "
                         f"or 'auto'")
    return ISAS[key]


def _gate_templates() -> list[str]:
    """Per gate id, a %-template over (a, b) with the constants already filled in."""
    out = []
    for g in gates.GATES:
        text = g.formula.replace("%", "%%").format(a="%(a)s", b="%(b)s", zero="DG_ZERO", ones="DG_ONES")
        out.append(text)
    return out


_GATE_TEMPLATES = _gate_templates()


def emit_chunks(program: Program, prefix: str) -> tuple[list[str], list[str]]:
    """C text of every chunk function and their names, in call order.

    Args:
        program: the lowered circuit.
        prefix: C identifier prefix of the generated functions and tables.

    Returns:
        (function definitions, function names).
    """
    kind, word = program.kind.tolist(), program.word.tolist()
    op, dst, a, b = program.op.tolist(), program.dst.tolist(), program.a.tolist(), program.b.tolist()
    nb = program.count_bits
    names = [f"w[{w}]" if k != LOCAL else f"t{v}" for v, (k, w) in enumerate(zip(kind, word))]
    names.append("")  # index -1: an operand the gate ignores
    bounds = [*program.chunk_starts, program.n_steps]
    defs, fnames = [], []
    for k in range(len(bounds) - 1):
        fname = f"{prefix}chunk_{k}"
        lines = [f"static DG_NOINLINE void {fname}(dg_word *DG_RESTRICT w, dg_word *DG_RESTRICT cnt) {{"]
        for i in range(bounds[k], bounds[k + 1]):
            o, d = op[i], dst[i]
            if o == GROUP_SUM:
                lines.append(f"    dg_group_sum(w, {prefix}group_{d}, {len(program.groups[d])}, cnt + {d * nb});")
                continue
            expr = _GATE_TEMPLATES[o] % {"a": names[a[i]], "b": names[b[i]]}
            lines.append(f"    const dg_word {names[d]} = {expr};" if kind[d] == LOCAL else f"    {names[d]} = {expr};")
        lines.append("    (void)w; (void)cnt;")  # a chunk may not touch both buffers
        lines.append("}")
        defs.append("\n".join(lines))
        fnames.append(fname)
    return defs, fnames


def emit_group_tables(program: Program, prefix: str, word_bytes: int) -> list[str]:
    """One ``static const int32_t`` table per class: byte offsets of its output words, in order."""
    word = program.word
    out = []
    for c, group in enumerate(program.groups):
        items = ",".join(str(int(w) * word_bytes) for w in word[group])
        out.append(f"static const int32_t {prefix}group_{c}[{len(group)}] = {{{items}}};")
    return out


_PRELUDE = Template(r"""#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define DG_NOINLINE __attribute__((noinline))
#else
#define DG_NOINLINE
#endif
#define DG_RESTRICT restrict
/* The gate chunks build with light optimisation (fast to compile, and straight-line bitwise code gains
   nothing from more); the small runtime loops below ask GCC for -O2 whatever the command line says. */
#if defined(__GNUC__) && !defined(__clang__)
#define DG_OPTIMIZE_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"O2\")")
#define DG_OPTIMIZE_END _Pragma("GCC pop_options")
#else
#define DG_OPTIMIZE_BEGIN
#define DG_OPTIMIZE_END
#endif

/* One word: bit j of 64-bit lane q holds sample 64*q + j of a block of DG_BLOCK samples. */
$word_typedef
#define DG_LANES $lanes
#define DG_BLOCK (64 * DG_LANES)
#define DG_ZERO ((dg_word){0})
#define DG_ONES (~(dg_word){0})
#define DG_INPUTS $n_inputs
#define DG_CLASSES $n_classes
#define DG_COUNT_BITS $count_bits
/* scratch words per block: the DG_INPUTS input words, then the live-value slots */
#define DG_WORDS $n_words
/* the word at byte offset off of buffer w (tables hold byte offsets: no scaling in the inner loops) */
#define DG_AT(w, off) (*(dg_word *)((char *)(w) + (off)))
""")

_WORD_TYPEDEF = {
    1: "typedef uint64_t dg_word;\n#define DG_LANE(x, q) (x)",
    4: "typedef uint64_t dg_word __attribute__((vector_size(32), aligned(32)));\n#define DG_LANE(x, q) ((x)[q])",
    8: "typedef uint64_t dg_word __attribute__((vector_size(64), aligned(64)));\n#define DG_LANE(x, q) ((x)[q])",
}

# Group sums, called from the chunks.
_GROUP_SUM = r"""
DG_OPTIMIZE_BEGIN
/* Add word x, of weight 2^k, to the bit-sliced counter planes[0 .. DG_COUNT_BITS). */
static inline void dg_add_at(dg_word *planes, dg_word x, int k) {
    for (; k < DG_COUNT_BITS; ++k) {
        dg_word carry = planes[k] & x;
        planes[k] ^= x;
        x = carry;
    }
}

/* Carry-save adder: (h, l) = two-bit sum of a + b + c; l may be the same variable as a. */
#define DG_CSA(h, l, a, b, c) do { dg_word u_ = (a) ^ (b); h = ((a) & (b)) | (u_ & (c)); l = u_ ^ (c); } while (0)

/* planes <- number of set bits among the words at byte offsets off[0 .. n) of w, per sample
   (Harley-Seal: 16 words per step, then one ripple add of weight 16). */
static void dg_group_sum(const dg_word *w, const int32_t *off, size_t n, dg_word *planes) {
    dg_word ones = DG_ZERO, twos = DG_ZERO, fours = DG_ZERO, eights = DG_ZERO;
    dg_word twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
    size_t i;
    int k;
    for (k = 0; k < DG_COUNT_BITS; ++k) planes[k] = DG_ZERO;
    for (i = 0; i + 16 <= n; i += 16) {
        const int32_t *x = off + i;
        DG_CSA(twos_a, ones, ones, DG_AT(w, x[0]), DG_AT(w, x[1]));
        DG_CSA(twos_b, ones, ones, DG_AT(w, x[2]), DG_AT(w, x[3]));
        DG_CSA(fours_a, twos, twos, twos_a, twos_b);
        DG_CSA(twos_a, ones, ones, DG_AT(w, x[4]), DG_AT(w, x[5]));
        DG_CSA(twos_b, ones, ones, DG_AT(w, x[6]), DG_AT(w, x[7]));
        DG_CSA(fours_b, twos, twos, twos_a, twos_b);
        DG_CSA(eights_a, fours, fours, fours_a, fours_b);
        DG_CSA(twos_a, ones, ones, DG_AT(w, x[8]), DG_AT(w, x[9]));
        DG_CSA(twos_b, ones, ones, DG_AT(w, x[10]), DG_AT(w, x[11]));
        DG_CSA(fours_a, twos, twos, twos_a, twos_b);
        DG_CSA(twos_a, ones, ones, DG_AT(w, x[12]), DG_AT(w, x[13]));
        DG_CSA(twos_b, ones, ones, DG_AT(w, x[14]), DG_AT(w, x[15]));
        DG_CSA(fours_b, twos, twos, twos_a, twos_b);
        DG_CSA(eights_b, fours, fours, fours_a, fours_b);
        DG_CSA(sixteens, eights, eights, eights_a, eights_b);
        dg_add_at(planes, sixteens, 4);
    }
    for (; i < n; ++i) dg_add_at(planes, DG_AT(w, off[i]), 0);
    dg_add_at(planes, ones, 0);
    dg_add_at(planes, twos, 1);
    dg_add_at(planes, fours, 2);
    dg_add_at(planes, eights, 3);
}
DG_OPTIMIZE_END
"""

# Packing, unpacking and block evaluation: identical for every word type.
_RUNTIME = Template(r"""
DG_OPTIMIZE_BEGIN
#define DG_CHUNKS ((DG_INPUTS + sizeof(dg_word) - 1) / sizeof(dg_word))
/* bytes readable from every row pointer: whole chunks (bytes past DG_INPUTS land in unused features) */
#define DG_ROW_BYTES (DG_CHUNKS * sizeof(dg_word))

static inline dg_word dg_load(const unsigned char *p) {
    dg_word v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Bytes f.. of 8 rows (each byte 0 or 1) -> one word whose bit k of each byte is row k's byte. */
static inline dg_word dg_or8(const unsigned char *const *g, size_t f) {
    dg_word a0 = dg_load(g[0] + f), a1 = dg_load(g[1] + f), a2 = dg_load(g[2] + f), a3 = dg_load(g[3] + f);
    dg_word a4 = dg_load(g[4] + f), a5 = dg_load(g[5] + f), a6 = dg_load(g[6] + f), a7 = dg_load(g[7] + f);
    return (a0 | (a1 << 1)) | ((a2 << 2) | (a3 << 3)) | ((a4 << 4) | (a5 << 5)) | ((a6 << 6) | (a7 << 7));
}

/* Swap the bit fields selected by mask between x >> shift and y (one stage of a transpose). */
#define DG_SWAP(x, y, shift, mask) do { dg_word t_ = (((x) >> (shift)) ^ (y)) & (mask); \
    (x) ^= t_ << (shift); (y) ^= t_; } while (0)

/* Transpose the 8x8 byte matrix in each 64-bit lane of m[0..7]: byte c of m[r] <-> byte r of m[c]. */
static inline void dg_transpose8(dg_word *m) {
    dg_word m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3], m4 = m[4], m5 = m[5], m6 = m[6], m7 = m[7];
    DG_SWAP(m0, m4, 32, 0x00000000FFFFFFFFULL); DG_SWAP(m1, m5, 32, 0x00000000FFFFFFFFULL);
    DG_SWAP(m2, m6, 32, 0x00000000FFFFFFFFULL); DG_SWAP(m3, m7, 32, 0x00000000FFFFFFFFULL);
    DG_SWAP(m0, m2, 16, 0x0000FFFF0000FFFFULL); DG_SWAP(m1, m3, 16, 0x0000FFFF0000FFFFULL);
    DG_SWAP(m4, m6, 16, 0x0000FFFF0000FFFFULL); DG_SWAP(m5, m7, 16, 0x0000FFFF0000FFFFULL);
    DG_SWAP(m0, m1, 8, 0x00FF00FF00FF00FFULL); DG_SWAP(m2, m3, 8, 0x00FF00FF00FF00FFULL);
    DG_SWAP(m4, m5, 8, 0x00FF00FF00FF00FFULL); DG_SWAP(m6, m7, 8, 0x00FF00FF00FF00FFULL);
    m[0] = m0; m[1] = m1; m[2] = m2; m[3] = m3; m[4] = m4; m[5] = m5; m[6] = m6; m[7] = m7;
}

$lane_transpose

/* rows[j]: the DG_INPUTS bytes (each 0 or 1) of sample j of the block -> w[f]: one word per feature.
   Phase 1 reads 8 rows at a time front to back (sequential streams the prefetcher follows) into
   acc[chunk][group]; phase 2 transposes bytes within lanes (8x8) and lanes across words (LxL). */
static void dg_pack_block(const unsigned char *const *rows, dg_word *w, dg_word *acc) {
    size_t g, c, r, q, o;
    for (g = 0; g < DG_BLOCK / 8; ++g) {
        for (c = 0; c < DG_CHUNKS; ++c) acc[c * (DG_BLOCK / 8) + g] = dg_or8(rows + 8 * g, c * sizeof(dg_word));
    }
    for (c = 0; c < DG_CHUNKS; ++c) {
        dg_word t[8][DG_LANES], out[DG_LANES];
        for (o = 0; o < DG_LANES; ++o) {
            /* groups 8 o .. 8 o + 7 = samples 64 o .. 64 o + 63; after the transpose, lane q of
               m[r] is feature 8 (c * DG_LANES + q) + r ... of those 64 samples */
            dg_word *m = acc + c * (DG_BLOCK / 8) + 8 * o;
            dg_transpose8(m);
            for (r = 0; r < 8; ++r) t[r][o] = m[r];
        }
        for (r = 0; r < 8; ++r) {
            dg_lane_transpose(t[r], out);  /* out[q]: feature c * sizeof(dg_word) + 8 q + r */
            for (q = 0; q < DG_LANES; ++q) {
                size_t feat = c * sizeof(dg_word) + 8 * q + r;
                if (feat < DG_INPUTS) w[feat] = out[q];
            }
        }
    }
}

$unpack

$eval

/* Heap buffer aligned to 64 bytes for dg_word (C99 has no aligned_alloc); free(*base) releases it. */
static void *dg_alloc(size_t bytes, void **base) {
    *base = malloc(bytes + 64);
    if (!*base) return NULL;
    return (void *)(((uintptr_t)*base + 63) & ~(uintptr_t)63);
}

static const unsigned char dg_zero_row[DG_ROW_BYTES + 1];
/* rows whose whole chunks could run past the end of x: at most this many, copied into a padded buffer */
#define DG_PAD_ROWS (sizeof(dg_word) + 1)

/* Row pointers of block `first`: samples past n read zeros; the last rows of x are read from padded copies. */
static void dg_block_rows(const unsigned char *x, size_t n, size_t first, const unsigned char **rows,
                          unsigned char *pad) {
    const unsigned char *end = x + n * DG_INPUTS;
    size_t j, used = 0;
    for (j = 0; j < DG_BLOCK; ++j) {
        const unsigned char *row = first + j < n ? x + (first + j) * DG_INPUTS : dg_zero_row;
        if (first + j < n && (size_t)(end - row) < DG_ROW_BYTES) {
            unsigned char *copy = pad + used++ * DG_ROW_BYTES;
            memset(copy, 0, DG_ROW_BYTES);
            memcpy(copy, row, DG_INPUTS);
            row = copy;
        }
        rows[j] = row;
    }
}

/* Blocks [b0, b1) of a batch of n samples, from x (rows of bytes) or packed (see dg_pack_range);
   table: the step table ("table" layout; unused by the "code" layout). */
static int dg_run(const int32_t *table, size_t table_len, const unsigned char *x, const uint64_t *packed,
                  size_t n, int32_t *counts, size_t b0, size_t b1) {
    void *base_w, *base_cnt, *base_acc;
    dg_word *w = (dg_word *)dg_alloc(sizeof(dg_word) * (DG_WORDS + 1), &base_w);
    dg_word *cnt = (dg_word *)dg_alloc(sizeof(dg_word) * (DG_CLASSES * DG_COUNT_BITS), &base_cnt);
    dg_word *acc = (dg_word *)dg_alloc(sizeof(dg_word) * (DG_CHUNKS * DG_BLOCK / 8 + 1), &base_acc);
    unsigned char *pad = (unsigned char *)malloc(DG_PAD_ROWS * DG_ROW_BYTES + 1);
    const unsigned char *rows[DG_BLOCK];
    size_t blk;
    int status = 0;
    if (!w || !cnt || !acc || !pad) {
        status = -1;
    } else {
        for (blk = b0; blk < b1; ++blk) {
            size_t first = blk * DG_BLOCK;
            size_t valid = n - first < DG_BLOCK ? n - first : DG_BLOCK;
            if (x) {
                dg_block_rows(x, n, first, rows, pad);
                dg_pack_block(rows, w, acc);
            } else {
                memcpy(w, packed + blk * DG_INPUTS * DG_LANES, sizeof(dg_word) * DG_INPUTS);
            }
            dg_eval(table, table_len, w, cnt);
            dg_unpack(cnt, valid, counts + first * DG_CLASSES);
        }
    }
    free(base_w);
    free(base_cnt);
    free(base_acc);
    free(pad);
    return status;
}

/* Pack blocks [b0, b1) of x into packed: DG_INPUTS words of DG_LANES uint64 per block. */
static int dg_pack_range(const unsigned char *x, size_t n, uint64_t *packed, size_t b0, size_t b1) {
    void *base_w, *base_acc;
    dg_word *w = (dg_word *)dg_alloc(sizeof(dg_word) * (DG_INPUTS + 1), &base_w);
    dg_word *acc = (dg_word *)dg_alloc(sizeof(dg_word) * (DG_CHUNKS * DG_BLOCK / 8 + 1), &base_acc);
    unsigned char *pad = (unsigned char *)malloc(DG_PAD_ROWS * DG_ROW_BYTES + 1);
    const unsigned char *rows[DG_BLOCK];
    size_t blk;
    int status = 0;
    if (!w || !acc || !pad) status = -1;
    for (blk = b0; blk < b1 && status == 0; ++blk) {
        dg_block_rows(x, n, blk * DG_BLOCK, rows, pad);
        dg_pack_block(rows, w, acc);
        memcpy(packed + blk * DG_INPUTS * DG_LANES, w, sizeof(dg_word) * DG_INPUTS);
    }
    free(base_w);
    free(base_acc);
    free(pad);
    return status;
}

/* 1 when this CPU can run the word type the file was compiled for. */
static int dg_cpu_ok(void) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return $cpu_check;
#else
    return 1;
#endif
}
DG_OPTIMIZE_END
""")

_UNPACK_SCALAR = r"""/* Count bit planes -> int32 counts of the first `valid` samples (row-major: sample, class). */
static void dg_unpack(const dg_word *cnt, size_t valid, int32_t *counts) {
    size_t j;
    int c, w;
    for (j = 0; j < valid; ++j) {
        for (c = 0; c < DG_CLASSES; ++c) {
            uint32_t v = 0;
            for (w = 0; w < DG_COUNT_BITS; ++w) v |= (uint32_t)((cnt[c * DG_COUNT_BITS + w] >> j) & 1u) << w;
            counts[j * DG_CLASSES + c] = (int32_t)v;
        }
    }
}"""

_UNPACK_VECTOR = Template(r"""/* Count bit planes -> int32 counts, DG_CLANES samples per vector step. */
typedef $ctype dg_count_t;
typedef dg_count_t dg_cvec __attribute__((vector_size(32)));
#define DG_CLANES $clanes
static void dg_unpack(const dg_word *cnt, size_t valid, int32_t *counts) {
    static const dg_cvec lane_bit = {$lane_bits};
    dg_count_t tmp[DG_CLASSES][DG_CLANES];
    size_t base, j;
    int o, h, c, w;
    for (o = 0; o < DG_LANES; ++o) {
        for (h = 0; h < 64 / DG_CLANES; ++h) {
            base = 64 * (size_t)o + DG_CLANES * (size_t)h;
            if (base >= valid) return;
            for (c = 0; c < DG_CLASSES; ++c) {
                dg_cvec acc = {0};
                for (w = 0; w < DG_COUNT_BITS; ++w) {
                    uint64_t plane = DG_LANE(cnt[c * DG_COUNT_BITS + w], o);
                    dg_cvec bits = (dg_cvec){0} + (dg_count_t)(plane >> (DG_CLANES * h));
                    acc |= (dg_cvec)((bits & lane_bit) != 0) & (dg_count_t)(1u << w);
                }
                memcpy(tmp[c], &acc, sizeof acc);
            }
            for (j = 0; j < DG_CLANES && base + j < valid; ++j)
                for (c = 0; c < DG_CLASSES; ++c) counts[(base + j) * DG_CLASSES + c] = (int32_t)tmp[c][j];
        }
    }
}""")


def _lane_transpose_source(lanes: int) -> str:
    """C of ``dg_lane_transpose(in, out)``: out[q] lane o = in[o] lane q, for ``lanes`` x ``lanes`` words.

    log2(lanes) stages; the stage at distance d swaps the off-diagonal d x d blocks of lanes between
    words i and i + d (the lane-level twin of the byte transpose), with two shuffles per word pair.
    """
    head = "/* out[q] lane o = in[o] lane q (a transpose of 64-bit lanes across DG_LANES words). */\n"
    sig = "static inline void dg_lane_transpose(const dg_word *in, dg_word *out) {\n"
    if lanes == 1:
        return head + sig + "    out[0] = in[0];\n}"
    lines = [
        "#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)",
        "#define DG_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)",
        "#else",
        "typedef int64_t dg_lane_index __attribute__((vector_size(sizeof(dg_word))));",
        "#define DG_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (dg_lane_index){__VA_ARGS__})",
        "#endif",
        head + sig.rstrip("\n"),
        "    dg_word " + ", ".join(f"x{i} = in[{i}]" for i in range(lanes)) + ";",
    ]
    d = lanes // 2
    while d >= 1:
        for i in range(lanes):
            if i & d:
                continue
            j = i + d
            # new i: lanes q without bit d from old i, with bit d from old j (shifted down by d)
            mi = [(lanes + q - d) if q & d else q for q in range(lanes)]
            mj = [(lanes + q) if q & d else (q + d) for q in range(lanes)]
            lines.append(f"    {{ dg_word u = DG_SHUFFLE(x{i}, x{j}, {', '.join(map(str, mi))}); "
                         f"x{j} = DG_SHUFFLE(x{i}, x{j}, {', '.join(map(str, mj))}); x{i} = u; }}")
        d //= 2
    lines.append("    " + " ".join(f"out[{i}] = x{i};" for i in range(lanes)))
    lines.append("}")
    return "\n".join(lines)


def _unpack_source(program: Program, isa: Isa) -> str:
    if isa.lanes == 1:
        return _UNPACK_SCALAR
    wide = program.count_bits > 16  # 16-bit lanes hold counts < 65536
    clanes = 8 if wide else 16
    return _UNPACK_VECTOR.substitute(ctype="uint32_t" if wide else "uint16_t", clanes=clanes,
                                     lane_bits=", ".join(f"{1 << i}u" for i in range(clanes)))


def _exec_source() -> str:
    """C of ``dg_exec``: the "table" layout's loop, one tight loop per gate type (from gates.GATES)."""
    lines = ["/* Run the step table (c_program.encode_table: byte offsets) on one block: [op, n, arg] records. */",
             "static void dg_exec(const int32_t *p, size_t len, dg_word *DG_RESTRICT w, dg_word *DG_RESTRICT cnt) {",
             "    const int32_t *end = p + len;",
             "    while (p < end) {",
             "        const int32_t op = p[0], n = p[1], arg = p[2];",
             "        int32_t i;",
             "        p += 3;",
             "        switch (op) {",
             "        case -1:",
             "            dg_group_sum(w, p, (size_t)n, cnt + arg * DG_COUNT_BITS);",
             "            p += n;",
             "            break;"]
    for g in gates.GATES:
        expr = _GATE_TEMPLATES[g.id] % {"a": "DG_AT(w, p[1])", "b": "DG_AT(w, p[2])"}
        loop = f"for (i = 0; i < n; ++i, p += 3) DG_AT(w, p[0]) = {expr};"
        lines.append(f"        case {g.id}: {loop} break;  /* {g.name} */")
    lines += ["        default: return;  /* not a valid table: stop rather than read garbage */",
              "        }", "    }", "}"]
    return "\n".join(lines)


def emit_core(program: Program, isa: Isa, prefix: str) -> str:
    """Everything but the public entry points: types, steps, pack/unpack, ``dg_run``."""
    prelude = _PRELUDE.substitute(word_typedef=_WORD_TYPEDEF[isa.lanes], lanes=isa.lanes,
                                  n_inputs=program.n_inputs, n_classes=program.num_classes,
                                  count_bits=program.count_bits, n_words=program.n_words)
    if program.layout == "code":
        defs, names = emit_chunks(program, prefix)
        body = [*emit_group_tables(program, prefix, 8 * isa.lanes), *defs]
        calls = "\n".join(f"    {name}(w, cnt);" for name in names)
        eval_fn = ("static void dg_eval(const int32_t *table, size_t len, dg_word *DG_RESTRICT w, "
                   "dg_word *DG_RESTRICT cnt) {\n    (void)table; (void)len;\n" + calls + "\n}")
    else:
        body = [_exec_source()]
        eval_fn = ("static void dg_eval(const int32_t *table, size_t len, dg_word *DG_RESTRICT w, "
                   "dg_word *DG_RESTRICT cnt) {\n    dg_exec(table, len, w, cnt);\n}")
    cpu_check = " && ".join(f'__builtin_cpu_supports("{f}")' for f in isa.cpu_features) or "1"
    runtime = _RUNTIME.substitute(unpack=_unpack_source(program, isa), eval=eval_fn,
                                  lane_transpose=_lane_transpose_source(isa.lanes),
                                  cpu_check=f"({cpu_check}) ? 1 : 0")
    return "\n".join([prelude, _GROUP_SUM, *body, runtime])


_ENGINE_API = r"""
/* ---- entry points of the diffgates engine (loaded with ctypes) ---- */
#ifndef _OPENMP
#include <pthread.h>
#endif

typedef struct {
    const int32_t *table;
    size_t table_len;
    const unsigned char *x;
    const uint64_t *packed;
    uint64_t *pack_out;
    size_t n, b0, b1;
    int32_t *counts;
    int status;
} dg_job;

static void *dg_job_run(void *arg) {
    dg_job *j = (dg_job *)arg;
    j->status = j->pack_out ? dg_pack_range(j->x, j->n, j->pack_out, j->b0, j->b1)
                            : dg_run(j->table, j->table_len, j->x, j->packed, j->n, j->counts, j->b0, j->b1);
    return NULL;
}

/* Split the blocks into `threads` contiguous ranges; every block is computed by exactly one thread. */
static int dg_dispatch(dg_job proto, int threads) {
    size_t nblocks = (proto.n + DG_BLOCK - 1) / DG_BLOCK;
    int t, status = 0;
    if (threads < 1) threads = 1;
    if ((size_t)threads > nblocks) threads = (int)nblocks;
    if (threads <= 1) {
        proto.b0 = 0;
        proto.b1 = nblocks;
        dg_job_run(&proto);
        return proto.status;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static, 1) reduction(| : status)
    for (t = 0; t < threads; ++t) {
        dg_job j = proto;
        j.b0 = nblocks * (size_t)t / (size_t)threads;
        j.b1 = nblocks * (size_t)(t + 1) / (size_t)threads;
        dg_job_run(&j);
        status |= j.status;
    }
#else
    {
        dg_job *jobs = (dg_job *)malloc(sizeof(dg_job) * (size_t)threads);
        pthread_t *ids = (pthread_t *)malloc(sizeof(pthread_t) * (size_t)threads);
        int *started = (int *)calloc((size_t)threads, sizeof(int));
        if (!jobs || !ids || !started) {
            free(jobs); free(ids); free(started);
            proto.b0 = 0; proto.b1 = nblocks;
            dg_job_run(&proto);
            return proto.status;
        }
        for (t = 0; t < threads; ++t) {
            jobs[t] = proto;
            jobs[t].b0 = nblocks * (size_t)t / (size_t)threads;
            jobs[t].b1 = nblocks * (size_t)(t + 1) / (size_t)threads;
            /* thread 0's range runs on the caller; a thread that cannot start runs here too */
            if (t > 0) started[t] = pthread_create(&ids[t], NULL, dg_job_run, &jobs[t]) == 0;
        }
        for (t = 0; t < threads; ++t) if (!started[t]) dg_job_run(&jobs[t]);
        for (t = 1; t < threads; ++t) if (started[t]) pthread_join(ids[t], NULL);
        for (t = 0; t < threads; ++t) status |= jobs[t].status;
        free(jobs); free(ids); free(started);
    }
#endif
    return status;
}

int dg_lanes(void) { return DG_LANES; }
int dg_cpu_supported(void) { return dg_cpu_ok(); }
int dg_parallel_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* x: n rows of DG_INPUTS bytes (0/1) -> counts: n rows of DG_CLASSES int32. 0 = ok, -1 = out of memory.
   table/table_len: the step table of the "table" layout (NULL/0 for the "code" layout). */
int dg_counts(const int32_t *table, int64_t table_len, const unsigned char *x, int64_t n, int32_t *counts,
              int threads) {
    dg_job j = {0};
    j.table = table; j.table_len = (size_t)table_len; j.x = x; j.n = (size_t)n; j.counts = counts;
    return dg_dispatch(j, threads);
}

/* packed: ceil(n / DG_BLOCK) blocks of DG_INPUTS words (see dg_pack) -> counts. */
int dg_counts_packed(const int32_t *table, int64_t table_len, const uint64_t *packed, int64_t n,
                     int32_t *counts, int threads) {
    dg_job j = {0};
    j.table = table; j.table_len = (size_t)table_len; j.packed = packed; j.n = (size_t)n; j.counts = counts;
    return dg_dispatch(j, threads);
}

/* x -> packed: block b, feature f, lane q, bit k = sample b*DG_BLOCK + 64*q + k (zero past n). */
int dg_pack(const unsigned char *x, int64_t n, uint64_t *packed, int threads) {
    dg_job j = {0};
    j.x = x; j.n = (size_t)n; j.pack_out = packed;
    return dg_dispatch(j, threads);
}
"""


def engine_source(program: Program, isa: Isa) -> str:
    """The complete C file of the compiled engine (``dg_counts`` & co., see ``_ENGINE_API``)."""
    return emit_core(program, isa, prefix="dg_") + _ENGINE_API

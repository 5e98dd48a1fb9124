/* example_main.c: predict classes with tiny (tiny.h documents the ABI).
 *
 * Input: one sample per line, TINY_NUM_INPUTS characters '0' or '1' (other characters such as spaces
 * or commas are skipped; blank lines are ignored), read from the file named as the first argument,
 * or from stdin. Output: one line per sample with its predicted class (ties -> lowest class index).
 *
 * Build: make   (or: cc -std=c99 -O2 -o example example_main.c tiny.c)
 * Run:   ./example samples.txt
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny.h"

int main(int argc, char **argv) {
    FILE *in = argc > 1 ? fopen(argv[1], "r") : stdin;
    size_t cap = 1024, n = 0, bits = 0, line = 1, i;
    unsigned char *x;
    int32_t *classes;
    int ch;
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    if (!tiny_cpu_supported()) {
        fprintf(stderr, "this CPU lacks the vector instructions tiny.c was compiled for\n");
        return 1;
    }
    x = (unsigned char *)malloc(cap * TINY_NUM_INPUTS);
    if (!x) return 1;
    for (;;) {
        ch = fgetc(in);
        if (ch == '0' || ch == '1') {
            if (bits == TINY_NUM_INPUTS) {
                fprintf(stderr, "line %lu: more than %d bits\n", (unsigned long)line, TINY_NUM_INPUTS);
                return 1;
            }
            if (n == cap) {
                unsigned char *grown = (unsigned char *)realloc(x, 2 * cap * TINY_NUM_INPUTS);
                if (!grown) return 1;
                x = grown;
                cap *= 2;
            }
            x[n * TINY_NUM_INPUTS + bits++] = (unsigned char)(ch - '0');
        } else if (ch == '\n' || ch == EOF) {
            if (bits == TINY_NUM_INPUTS) {
                ++n;
            } else if (bits != 0) {
                fprintf(stderr, "line %lu: %lu bits, expected %d\n", (unsigned long)line, (unsigned long)bits,
                        TINY_NUM_INPUTS);
                return 1;
            }
            bits = 0;
            ++line;
            if (ch == EOF) break;
        }
    }
    classes = (int32_t *)malloc((n ? n : 1) * sizeof *classes);
    if (!classes || tiny_classify(x, n, classes) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (i = 0; i < n; ++i) printf("%ld\n", (long)classes[i]);
    free(x);
    free(classes);
    return 0;
}

/* example_main.c: run tiny on samples from a file (tiny.h documents the ABI).
 *
 * Input: one sample per line, TINY_NUM_INPUTS characters '0' or '1'; spaces, tabs and commas between
 * them are allowed, blank lines are ignored, anything else is an error. Read from the file named as
 * the first argument, or from stdin.
 * Output: one line per sample with its predicted class (ties -> lowest class index).
 *
 * Build: make   (or: cc -std=c99 -O2 -o example example_main.c tiny.c)
 * Run:   ./example samples.txt
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny.h"

static int fail(FILE *in, unsigned char *x, void *y, const char *message, unsigned long line) {
    if (line) fprintf(stderr, "line %lu: %s\n", line, message);
    else fprintf(stderr, "%s\n", message);
    if (in && in != stdin) fclose(in);
    free(x);
    free(y);
    return 1;
}

int main(int argc, char **argv) {
    FILE *in = argc > 1 ? fopen(argv[1], "r") : stdin;
    size_t cap = 1024, n = 0, bits = 0, i;
    unsigned long line = 1;
    unsigned char *x;
    int32_t *classes;
    int ch;
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    if (!tiny_cpu_supported()) return fail(in, NULL, NULL, "this CPU lacks the vector instructions tiny.c was compiled for", 0);
    x = (unsigned char *)malloc(cap * TINY_NUM_INPUTS);
    if (!x) return fail(in, NULL, NULL, "out of memory", 0);
    for (;;) {
        ch = fgetc(in);
        if (ch == '0' || ch == '1') {
            if (bits == TINY_NUM_INPUTS) {
                char message[64];
                sprintf(message, "more than %d bits", TINY_NUM_INPUTS);
                return fail(in, x, NULL, message, line);
            }
            if (n == cap) {
                unsigned char *grown = (unsigned char *)realloc(x, 2 * cap * TINY_NUM_INPUTS);
                if (!grown) return fail(in, x, NULL, "out of memory", 0);
                x = grown;
                cap *= 2;
            }
            x[n * TINY_NUM_INPUTS + bits++] = (unsigned char)(ch - '0');
        } else if (ch == '\n' || ch == EOF) {
            if (bits == TINY_NUM_INPUTS) {
                ++n;
            } else if (bits != 0) {
                char message[96];
                sprintf(message, "%lu bits, expected %d", (unsigned long)bits, TINY_NUM_INPUTS);
                return fail(in, x, NULL, message, line);
            }
            bits = 0;
            ++line;
            if (ch == EOF) break;
        } else if (ch != ' ' && ch != '\t' && ch != ',' && ch != '\r') {
            char message[64];
            sprintf(message, "character %d is not a bit (expected 0 or 1)", ch);
            return fail(in, x, NULL, message, line);
        }
    }
    if (in != stdin) fclose(in);
    classes = (int32_t *)malloc((n ? n : 1) * sizeof *classes);
    if (!classes || tiny_classify(x, n, classes) != 0) return fail(NULL, x, classes, "out of memory", 0);
    for (i = 0; i < n; ++i) printf("%ld\n", (long)classes[i]);
    free(x);
    free(classes);
    return 0;
}

/* A tiny TAP producer for the unit tests.
 *
 *   ok(cond, "name %d", i);          -> "ok 1 - name 0" or "not ok 1 - ..."
 *   is_int(got, want, "name");       integers (compared as intmax_t)
 *   is_uint(got, want, "name");      unsigned (compared as uintmax_t)
 *   is_str(got, want, "name");       strings; NULL only equals NULL
 *   return done_testing();           prints "1..N", exit status 1 on failure
 *
 * On failure the got/want values follow as "# " diagnostic lines, so a
 * failing run says what differed. Everything is static inline: each test is
 * one translation unit. */
#ifndef QIMG_TESTS_TAP_H
#define QIMG_TESTS_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct tap_state {
    int n;
    int failed;
};

static inline struct tap_state *tap_state(void)
{
    static struct tap_state st;
    return &st;
}

__attribute__((format(printf, 4, 0)))
static inline bool tap_vreport(bool pass, const char *file, int line, const char *fmt, va_list ap)
{
    struct tap_state *st = tap_state();

    st->n++;
    printf("%sok %d - ", pass ? "" : "not ", st->n);
    vprintf(fmt, ap);
    putchar('\n');
    if (!pass) {
        st->failed++;
        printf("#   Failed test at %s line %d.\n", file, line);
    }
    fflush(stdout);
    return pass;
}

__attribute__((format(printf, 4, 5)))
static inline bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    bool r;

    va_start(ap, fmt);
    r = tap_vreport(pass, file, line, fmt, ap);
    va_end(ap);
    return r;
}

__attribute__((format(printf, 5, 6)))
static inline bool tap_is_int(intmax_t got, intmax_t want, const char *file, int line,
                              const char *fmt, ...)
{
    va_list ap;
    bool r;

    va_start(ap, fmt);
    r = tap_vreport(got == want, file, line, fmt, ap);
    va_end(ap);
    if (!r)
        printf("#          got: %jd\n#     expected: %jd\n", got, want);
    return r;
}

__attribute__((format(printf, 5, 6)))
static inline bool tap_is_uint(uintmax_t got, uintmax_t want, const char *file, int line,
                               const char *fmt, ...)
{
    va_list ap;
    bool r;

    va_start(ap, fmt);
    r = tap_vreport(got == want, file, line, fmt, ap);
    va_end(ap);
    if (!r)
        printf("#          got: %ju\n#     expected: %ju\n", got, want);
    return r;
}

__attribute__((format(printf, 5, 6)))
static inline bool tap_is_str(const char *got, const char *want, const char *file, int line,
                              const char *fmt, ...)
{
    va_list ap;
    bool pass = (got == NULL && want == NULL) ||
                (got != NULL && want != NULL && strcmp(got, want) == 0);
    bool r;

    va_start(ap, fmt);
    r = tap_vreport(pass, file, line, fmt, ap);
    va_end(ap);
    if (!r) {
        printf("#          got: %s%s%s\n", got ? "'" : "", got ? got : "NULL", got ? "'" : "");
        printf("#     expected: %s%s%s\n", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    }
    return r;
}

/* Print the plan; the return value is the process exit status. */
static inline int done_testing(void)
{
    struct tap_state *st = tap_state();

    printf("1..%d\n", st->n);
    if (st->failed)
        printf("# Looks like you failed %d test%s of %d.\n", st->failed,
               st->failed == 1 ? "" : "s", st->n);
    fflush(stdout);
    return st->failed ? 1 : 0;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) tap_is_int((intmax_t)(got), (intmax_t)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_uint(got, want, ...) tap_is_uint((uintmax_t)(got), (uintmax_t)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

/* Hex text ("00ff...") to bytes, at most max; returns how many were read
 * (known-answer vectors). */
static inline size_t unhex(const char *s, uint8_t *out, size_t max)
{
    size_t n = 0;
    while (s[0] && s[1] && n < max) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

#endif

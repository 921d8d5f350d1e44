/* Error convention: int functions return 0 (or a count) or -errno; the
 * human message goes into a caller-owned struct err (always the last
 * parameter, may be NULL, untouched on success). Callers add context with
 * err_prefix() to build qemu-img's nested messages. */
#ifndef QIMG_UTIL_ERR_H
#define QIMG_UTIL_ERR_H

#include <stdbool.h>

#define ERR_MSG_MAX 2048

struct err {
    bool set;
    int code;               /* positive errno */
    bool no_newline;        /* qemu prints this one without its final newline
                               (a hint that lacks one) */
    char msg[ERR_MSG_MAX];
};

void err_init(struct err *e);
/* Set a message; returns -code so callers can `return err_set(...)`. */
int err_set(struct err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like err_set, then appends ": <strerror(code)>" as qemu's error_setg_errno. */
int err_set_errno(struct err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepend context: "<prefix><old message>". No-op when nothing is set. */
void err_prefix(struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Move src into dst (dst may be NULL); clears src. */
void err_propagate(struct err *dst, struct err *src);
bool err_is_set(const struct err *e);

#endif

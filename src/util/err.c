/* The error-message carrier; see err.h for the convention. */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void err_init(struct err *e)
{
    if (e) {
        e->set = false;
        e->code = 0;
        e->no_newline = false;
        e->msg[0] = '\0';
    }
}

static int err_vset(struct err *e, int code, bool with_errno, const char *fmt, va_list ap)
{
    if (code < 0)
        code = -code;
    if (!e)
        return -code;
    e->set = true;
    e->code = code;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    if (with_errno) {
        size_t n = strlen(e->msg);
        snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(code));
    }
    return -code;
}

int err_set(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = err_vset(e, code, false, fmt, ap);
    va_end(ap);
    return r;
}

int err_set_errno(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = err_vset(e, code, true, fmt, ap);
    va_end(ap);
    return r;
}

void err_prefix(struct err *e, const char *fmt, ...)
{
    char pre[ERR_MSG_MAX], old[ERR_MSG_MAX];
    va_list ap;

    if (!e || !e->set)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    size_t n = strnlen(pre, sizeof(pre) - 1);
    memcpy(e->msg, pre, n);
    size_t m = strnlen(old, sizeof(old) - 1);
    if (m > sizeof(e->msg) - 1 - n)
        m = sizeof(e->msg) - 1 - n;
    memcpy(e->msg + n, old, m);
    e->msg[n + m] = '\0';
}

void err_propagate(struct err *dst, struct err *src)
{
    if (dst && src->set && !dst->set)
        *dst = *src;
    err_init(src);
}

bool err_is_set(const struct err *e)
{
    return e && e->set;
}

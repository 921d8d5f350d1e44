/* Growable NUL-terminated string buffer. Growth goes through xrealloc: the
 * text we build (messages, JSON output) is program-controlled in size. */
#include "util/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

void strbuf_init(struct strbuf *sb)
{
    sb->buf = NULL;
    sb->len = 0;
    sb->cap = 0;
}

void strbuf_release(struct strbuf *sb)
{
    if (!sb)
        return;
    free(sb->buf);
    strbuf_init(sb);
}

/* Make room for extra more bytes plus the terminator. */
static void strbuf_grow(struct strbuf *sb, size_t extra)
{
    size_t need;

    if (__builtin_add_overflow(sb->len, extra, &need) ||
        __builtin_add_overflow(need, 1, &need)) {
        fprintf(stderr, "qemu-img: string buffer size overflow\n");
        abort();
    }
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    sb->buf = xrealloc(sb->buf, cap);
    sb->cap = cap;
}

void strbuf_add(struct strbuf *sb, const char *s, size_t n)
{
    strbuf_grow(sb, n);
    if (n)
        memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void strbuf_puts(struct strbuf *sb, const char *s)
{
    strbuf_add(sb, s, strlen(s));
}

void strbuf_putc(struct strbuf *sb, char c)
{
    strbuf_add(sb, &c, 1);
}

void strbuf_addchars(struct strbuf *sb, char c, size_t n)
{
    strbuf_grow(sb, n);
    memset(sb->buf + sb->len, c, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    char probe[1];
    va_copy(ap2, ap);
    if (!fmt)   /* tells gcc 12 + UBSan the format is never NULL */
        abort();
    n = vsnprintf(probe, sizeof(probe), fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        fprintf(stderr, "qemu-img: strbuf: bad format\n");
        abort();
    }
    strbuf_grow(sb, (size_t)n);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(sb, fmt, ap);
    va_end(ap);
}

const char *strbuf_str(const struct strbuf *sb)
{
    return sb->buf ? sb->buf : "";
}

void strbuf_reset(struct strbuf *sb)
{
    sb->len = 0;
    if (sb->buf)
        sb->buf[0] = '\0';
}

char *strbuf_detach(struct strbuf *sb)
{
    char *s = sb->buf ? sb->buf : xstrdup("");

    strbuf_init(sb);
    return s;
}

/* Growable string buffer. */
#ifndef QIMG_UTIL_STRBUF_H
#define QIMG_UTIL_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
    char *buf;      /* always NUL-terminated once anything was added */
    size_t len, cap;
};

#define STRBUF_INIT { NULL, 0, 0 }

void strbuf_init(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);
void strbuf_add(struct strbuf *sb, const char *s, size_t n);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
const char *strbuf_str(const struct strbuf *sb);   /* "" when empty */
/* Append n copies of c (indentation). */
void strbuf_addchars(struct strbuf *sb, char c, size_t n);
/* Empty the buffer, keeping its memory. */
void strbuf_reset(struct strbuf *sb);
/* Hand the string to the caller (never NULL; free() it) and re-init sb. */
char *strbuf_detach(struct strbuf *sb);

#endif

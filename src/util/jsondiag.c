/* Error reporting of qemu 7.2's JSON reader (qobject/json-lexer.c,
 * json-streamer.c, json-parser.c, qjson.c; RFC 8259 plus qemu's
 * extensions: single-quoted strings and the \' escape; strings are
 * modified UTF-8, util/unicode.c), modelled only as far as needed to pick
 * the message qemu reports for a `json:` filename:
 *
 *  - The lexer turns bytes into tokens; a byte no token can continue with
 *    is an error whose text is the token so far plus that byte ("stray").
 *  - The streamer queues tokens until braces and brackets balance (or one
 *    count goes negative), then hands the queue to the parser; a lexer
 *    error or a size/count/nesting limit discards the queue instead.
 *  - Each of these hand-offs "emits" a value or an error; the first error
 *    is kept; anything emitted after a complete value turns the result
 *    into "Expecting at most one JSON value"; nothing at all is
 *    "Expecting a JSON value".
 *
 * Inputs larger than qemu's 64 MiB single-token limit are not modelled
 * (a command-line argument cannot be that long). */
#include "util/jsondiag.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

#define TOKEN_SIZE_MAX ((size_t)64 << 20)
#define TOKEN_COUNT_MAX ((size_t)2 << 20)
#define NESTING_MAX 1024
#define PARSE_MSG_MAX 1024   /* qemu formats parser messages into char[1024] */

enum tok_type {
    T_END, T_ERROR, T_LCURLY, T_RCURLY, T_LSQUARE, T_RSQUARE, T_COLON,
    T_COMMA, T_INTEGER, T_FLOAT, T_KEYWORD, T_STRING,
};

struct tok {
    enum tok_type type;
    size_t start, len;
};

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* An error token runs from the token start through the refused byte (the
 * lexer consumes it), or to the end of the input when the input ran out. */
static enum tok_type lex_fail(struct tok *t, size_t i, size_t n)
{
    t->type = T_ERROR;
    t->len = (i < n ? i + 1 : n) - t->start;
    return T_ERROR;
}

static enum tok_type lex_done(struct tok *t, enum tok_type type, size_t end)
{
    t->type = type;
    t->len = end - t->start;
    return type;
}

/* Digits after '.', then an optional exponent; i is just past the '.'. */
static enum tok_type lex_fraction(const unsigned char *s, size_t n, size_t i,
                                  struct tok *t, bool have_dot)
{
    if (have_dot) {
        if (i >= n || !is_digit(s[i]))
            return lex_fail(t, i, n);
        while (i < n && is_digit(s[i]))
            i++;
        if (i >= n || (s[i] != 'e' && s[i] != 'E'))
            return lex_done(t, T_FLOAT, i);
    }
    i++;                                   /* the 'e' / 'E' */
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i >= n || !is_digit(s[i]))
        return lex_fail(t, i, n);
    while (i < n && is_digit(s[i]))
        i++;
    return lex_done(t, T_FLOAT, i);
}

/* After the optional sign, at the first digit. */
static enum tok_type lex_number(const unsigned char *s, size_t n, size_t i,
                                struct tok *t)
{
    if (s[i] == '0') {
        i++;
        if (i < n && is_digit(s[i]))
            return lex_fail(t, i, n);
    } else {
        while (i < n && is_digit(s[i]))
            i++;
        if (i < n && (s[i] == 'e' || s[i] == 'E'))
            return lex_fraction(s, n, i, t, false);
    }
    if (i < n && s[i] == '.')
        return lex_fraction(s, n, i + 1, t, true);
    return lex_done(t, T_INTEGER, i);
}

static enum tok_type lex_string(const unsigned char *s, size_t n, size_t i,
                                struct tok *t)
{
    unsigned char quote = s[i++];

    for (;;) {
        if (i >= n || s[i] < 0x20 || s[i] >= 0xFE)
            return lex_fail(t, i, n);
        if (s[i] == quote)
            return lex_done(t, T_STRING, i + 1);
        if (s[i] == '\\') {
            i++;
            if (i >= n || s[i] < 0x20 || s[i] >= 0xFE)
                return lex_fail(t, i, n);
        }
        i++;
    }
}

/* The next token at or after *pos (whitespace skipped); *pos moves past it. */
static enum tok_type lex(const unsigned char *s, size_t n, size_t *pos, struct tok *t)
{
    size_t i = *pos;
    enum tok_type r;

    while (i < n && is_ws(s[i]))
        i++;
    t->start = i;
    if (i >= n) {
        r = lex_done(t, T_END, i);
    } else {
        switch (s[i]) {
        case '{': r = lex_done(t, T_LCURLY, i + 1); break;
        case '}': r = lex_done(t, T_RCURLY, i + 1); break;
        case '[': r = lex_done(t, T_LSQUARE, i + 1); break;
        case ']': r = lex_done(t, T_RSQUARE, i + 1); break;
        case ':': r = lex_done(t, T_COLON, i + 1); break;
        case ',': r = lex_done(t, T_COMMA, i + 1); break;
        case '"':
        case '\'':
            r = lex_string(s, n, i, t);
            break;
        case '-':
            if (i + 1 >= n || !is_digit(s[i + 1]))
                r = lex_fail(t, i + 1, n);
            else
                r = lex_number(s, n, i + 1, t);
            break;
        default:
            if (is_digit(s[i])) {
                r = lex_number(s, n, i, t);
            } else if (s[i] >= 'a' && s[i] <= 'z') {
                while (i < n && s[i] >= 'a' && s[i] <= 'z')
                    i++;
                r = lex_done(t, T_KEYWORD, i);
            } else {
                r = lex_fail(t, i, n);
            }
            break;
        }
    }
    *pos = t->start + t->len;
    return r;
}

/* ---- parser over one queued value ---- */

struct parser {
    const char *text;
    const struct tok *toks;
    size_t ntoks, next;
    char *err;                 /* "JSON parse error, ..." once failed */
};

enum val_kind { V_FAIL, V_STRING, V_OTHER };

static void perr(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void perr(struct parser *p, const char *fmt, ...)
{
    char msg[PARSE_MSG_MAX];
    va_list ap;

    if (p->err)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p->err = xasprintf("JSON parse error, %s", msg);
}

static const struct tok *peek(struct parser *p)
{
    return p->next < p->ntoks ? &p->toks[p->next] : NULL;
}

static const struct tok *pop(struct parser *p)
{
    return p->next < p->ntoks ? &p->toks[p->next++] : NULL;
}

static bool valid_codepoint(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return false;
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
        return false;
    return !(cp >= 0xD800 && cp <= 0xDFFF);
}

/* Append cp in modified UTF-8 (U+0000 as C0 80); out has room for 4. */
static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp > 0 && cp <= 0x7F) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One (modified) UTF-8 sequence at s[*i]; -1 when invalid. s is
 * NUL-terminated, which stops any sequence. */
static long get_utf8(const unsigned char *s, size_t *i)
{
    static const uint32_t min_cp[5] = { 0x80, 0x800, 0x10000, 0x200000, 0x4000000 };
    unsigned b = s[(*i)++], len = 0;
    uint32_t cp;

    if (b < 0x80)
        return b;
    if (b >= 0xFE || !(b & 0x40))
        return -1;
    for (unsigned m = 0x80; b & m; m >>= 1)
        len++;
    cp = b & ((0x80u >> len) - 1);
    for (unsigned k = 1; k < len; k++) {
        if ((s[*i] & 0xC0) != 0x80)
            return -1;
        cp = cp << 6 | (s[(*i)++] & 0x3F);
    }
    if (!valid_codepoint(cp))
        return -1;
    if (cp < min_cp[len - 2] && !(cp == 0 && len == 2))
        return -1;
    return (long)cp;
}

/* Four hex digits at s[i] (stopping at the first non-digit), or -1. */
static long hex4(const char *s, size_t i)
{
    long v = 0;

    for (size_t k = 0; k < 4; k++) {
        char c = s[i + k];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Decode a string token; NULL (and p->err) on failure. */
static char *decode_string(struct parser *p, const struct tok *t)
{
    char *s = xstrndup(p->text + t->start, t->len);
    char *out = xmalloc(t->len * 4 + 1);     /* each input byte gives <= 4 */
    char quote = s[0];
    size_t i = 1, o = 0;

    while (s[i] != quote) {
        if (s[i] == '\\') {
            size_t beg = i;
            char e = s[i + 1];
            const char *simple = strchr("\"'\\/bfnrt", e);
            i += 2;
            if (e && simple) {
                static const char map[] = "\"'\\/\b\f\n\r\t";
                out[o++] = map[simple - "\"'\\/bfnrt"];
                continue;
            }
            if (e != 'u') {
                perr(p, "invalid escape sequence in string");
                goto fail;
            }
            long cp = hex4(s, i);
            size_t shown;
            if (cp >= 0)
                i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && s[i] == '\\' && s[i + 1] == 'u') {
                long lo = hex4(s, i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp & 0x3FF) << 10) + (lo & 0x3FF);
                    i += 6;
                } else {
                    cp = -1;
                }
            }
            if (cp < 0 || !valid_codepoint((uint32_t)cp)) {
                /* qemu shows six bytes from the backslash (twelve for a
                 * surrogate pair), cut at the token's end. */
                shown = cp >= 0 ? i - beg : 6;
                perr(p, "%.*s is not a valid Unicode character", (int)shown, s + beg);
                goto fail;
            }
            o += put_utf8(out + o, (uint32_t)cp);
            continue;
        }
        long cp = get_utf8((const unsigned char *)s, &i);
        if (cp < 0) {
            perr(p, "invalid UTF-8 sequence in string");
            goto fail;
        }
        o += put_utf8(out + o, (uint32_t)cp);
    }
    out[o] = 0;
    free(s);
    return out;
fail:
    free(s);
    free(out);
    return NULL;
}

static enum val_kind parse_value(struct parser *p, char **str);

/* The decoded keys of one object: open addressing, kept at most half full. */
struct keyset {
    char **slot;
    size_t cap, n;
};

static size_t key_hash(const char *k)
{
    size_t h = 14695981039346656037u;

    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211u;
    return h;
}

/* Takes key; false (key freed) when it is already present. */
static bool keyset_add(struct keyset *ks, char *key)
{
    size_t i;

    if (2 * (ks->n + 1) > ks->cap) {
        struct keyset big = { xcalloc(ks->cap ? 2 * ks->cap : 16, sizeof(char *)),
                              ks->cap ? 2 * ks->cap : 16, 0 };
        for (size_t j = 0; j < ks->cap; j++)
            if (ks->slot[j])
                keyset_add(&big, ks->slot[j]);
        free(ks->slot);
        *ks = big;
    }
    for (i = key_hash(key) & (ks->cap - 1); ks->slot[i]; i = (i + 1) & (ks->cap - 1)) {
        if (!strcmp(ks->slot[i], key)) {
            free(key);
            return false;
        }
    }
    ks->slot[i] = key;
    ks->n++;
    return true;
}

static void keyset_free(struct keyset *ks)
{
    for (size_t j = 0; j < ks->cap; j++)
        free(ks->slot[j]);
    free(ks->slot);
}

static bool parse_pair(struct parser *p, struct keyset *keys)
{
    char *key = NULL;
    const struct tok *t;
    enum val_kind k;

    if (!peek(p)) {
        perr(p, "premature EOI");
        return false;
    }
    k = parse_value(p, &key);
    if (k != V_STRING) {
        perr(p, "key is not a string in object");
        return false;
    }
    t = pop(p);
    if (!t) {
        perr(p, "premature EOI");
        goto fail;
    }
    if (t->type != T_COLON) {
        perr(p, "missing : in object pair");
        goto fail;
    }
    if (parse_value(p, NULL) == V_FAIL) {
        perr(p, "Missing value in dict");
        goto fail;
    }
    if (!keyset_add(keys, key)) {
        perr(p, "duplicate key");
        return false;
    }
    return true;
fail:
    free(key);
    return false;
}

static bool parse_object(struct parser *p)
{
    struct keyset keys = { NULL, 0, 0 };
    const struct tok *t;
    bool ok = false;

    pop(p);                                       /* '{' */
    t = peek(p);
    if (!t) {
        perr(p, "premature EOI");
        goto out;
    }
    if (t->type == T_RCURLY) {
        pop(p);
        ok = true;
        goto out;
    }
    if (!parse_pair(p, &keys))
        goto out;
    for (;;) {
        t = pop(p);
        if (!t) {
            perr(p, "premature EOI");
            goto out;
        }
        if (t->type == T_RCURLY)
            break;
        if (t->type != T_COMMA) {
            perr(p, "expected separator in dict");
            goto out;
        }
        if (!parse_pair(p, &keys))
            goto out;
    }
    ok = true;
out:
    keyset_free(&keys);
    return ok;
}

static bool parse_array(struct parser *p)
{
    const struct tok *t;

    pop(p);                                       /* '[' */
    t = peek(p);
    if (!t) {
        perr(p, "premature EOI");
        return false;
    }
    if (t->type == T_RSQUARE) {
        pop(p);
        return true;
    }
    for (;;) {
        if (parse_value(p, NULL) == V_FAIL) {
            perr(p, "expecting value");
            return false;
        }
        t = pop(p);
        if (!t) {
            perr(p, "premature EOI");
            return false;
        }
        if (t->type == T_RSQUARE)
            return true;
        if (t->type != T_COMMA) {
            perr(p, "expected separator in list");
            return false;
        }
    }
}

/* str, when not NULL, receives a decoded string value. */
static enum val_kind parse_value(struct parser *p, char **str)
{
    const struct tok *t = peek(p);
    char *s;

    if (!t) {
        perr(p, "premature EOI");
        return V_FAIL;
    }
    switch (t->type) {
    case T_LCURLY:
        return parse_object(p) ? V_OTHER : V_FAIL;
    case T_LSQUARE:
        return parse_array(p) ? V_OTHER : V_FAIL;
    case T_INTEGER:
    case T_FLOAT:
        pop(p);
        return V_OTHER;
    case T_STRING:
        pop(p);
        s = decode_string(p, t);
        if (!s)
            return V_FAIL;
        if (str)
            *str = s;
        else
            free(s);
        return V_STRING;
    case T_KEYWORD:
        pop(p);
        if ((t->len == 4 && !memcmp(p->text + t->start, "true", 4)) ||
            (t->len == 5 && !memcmp(p->text + t->start, "false", 5)) ||
            (t->len == 4 && !memcmp(p->text + t->start, "null", 4)))
            return V_OTHER;
        perr(p, "invalid keyword '%.*s'", (int)t->len, p->text + t->start);
        return V_FAIL;
    default:
        perr(p, "expecting value");
        return V_FAIL;
    }
}

static char *parse_queue(const char *text, const struct tok *toks, size_t n)
{
    struct parser p = { .text = text, .toks = toks, .ntoks = n };

    parse_value(&p, NULL);
    return p.err;
}

/* ---- streamer and top level ---- */

char *json_diag(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), pos = 0, nq = 0, cap = 0, qsize = 0;
    long braces = 0, brackets = 0;
    struct tok *q = NULL, t;
    bool have_value = false;
    char *msg = NULL;

    for (;;) {
        enum tok_type type = lex(s, n, &pos, &t);

        if (type == T_END)
            break;
        if (have_value) {
            msg = xstrdup("Expecting at most one JSON value");
            goto out;
        }
        if (type == T_ERROR) {
            msg = xasprintf("JSON parse error, stray '%.*s'", (int)t.len, text + t.start);
            goto out;
        }
        braces += type == T_LCURLY ? 1 : type == T_RCURLY ? -1 : 0;
        brackets += type == T_LSQUARE ? 1 : type == T_RSQUARE ? -1 : 0;
        if (qsize + t.len + 1 > TOKEN_SIZE_MAX) {
            msg = xstrdup("JSON token size limit exceeded");
            goto out;
        }
        if (nq + 1 > TOKEN_COUNT_MAX) {
            msg = xstrdup("JSON token count limit exceeded");
            goto out;
        }
        if (braces + brackets > NESTING_MAX) {
            msg = xstrdup("JSON nesting depth limit exceeded");
            goto out;
        }
        if (nq == cap) {
            cap = cap ? cap * 2 : 64;
            q = xreallocarray(q, cap, sizeof(*q));
        }
        q[nq++] = t;
        qsize += t.len;
        if ((braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0)
            continue;
        msg = parse_queue(text, q, nq);
        if (msg)
            goto out;
        have_value = true;
        nq = qsize = 0;
        braces = brackets = 0;
    }
    if (!have_value) {
        msg = nq ? parse_queue(text, q, nq) : xstrdup("Expecting a JSON value");
    }
out:
    free(q);
    return msg;
}

/* qemu keeps U+0000 in a string as the bytes C0 80 (modified UTF-8);
 * jansson refuses both those bytes and a NUL in a key. The normalized
 * text carries it as U+FDD0 instead, a noncharacter that json_diag()
 * refuses in any form, so it cannot stand for anything else. */
#define NUL_STANDIN_ESC "\\ufdd0"
#define NUL_STANDIN_UTF8 "\xEF\xB7\x90"

char *json_diag_unmask(const char *s)
{
    char *out = xstrdup(s), *p = out;

    /* C0 80 is shorter than the stand-in: out never outgrows s */
    for (const char *q = s; *q;) {
        if (!strncmp(q, NUL_STANDIN_UTF8, 3)) {
            *p++ = (char)0xC0;
            *p++ = (char)0x80;
            q += 3;
        } else {
            *p++ = *q++;
        }
    }
    *p = 0;
    return out;
}

/* An integer beyond int64_t, which jansson refuses: qemu keeps it as a
 * uint64_t when it fits, else as a double, and options see it as text
 * ("%" PRIu64 or "%.17g"). Writes that text as a JSON string to out and
 * returns its length; 0 (nothing written) for an integer jansson reads. The
 * token is at least 19 digits long, so its string (at most 26 bytes) fits
 * in the two bytes per input byte the caller reserved. */
static size_t big_integer(const char *tok, size_t len, char *out)
{
    char num[512];
    unsigned long long u;

    if (len < 19)       /* 18 digits always fit */
        return 0;
    if (len >= sizeof(num))     /* beyond any double: what "%.17g" prints */
        return (size_t)sprintf(out, "\"%s\"", tok[0] == '-' ? "-inf" : "inf");
    memcpy(num, tok, len);
    num[len] = 0;
    errno = 0;
    (void)strtoll(num, NULL, 10);
    if (errno != ERANGE)
        return 0;
    if (num[0] != '-') {
        errno = 0;
        u = strtoull(num, NULL, 10);
        if (errno != ERANGE)
            return (size_t)sprintf(out, "\"%llu\"", u);
    }
    return (size_t)sprintf(out, "\"%.17g\"", strtod(num, NULL));
}

char *json_diag_normalize(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), pos = 0, o = 0;
    char *out = xmalloc(3 * n + 1);   /* a byte becomes at most three */
    struct tok t;

    for (;;) {
        size_t from = pos;
        enum tok_type type = lex(s, n, &pos, &t);

        memcpy(out + o, text + from, t.start - from);     /* whitespace */
        o += t.start - from;
        if (type == T_END || type == T_ERROR)
            break;
        if (type == T_INTEGER) {
            size_t w = big_integer(text + t.start, t.len, out + o);
            o += w;
            if (w)
                continue;
        }
        if (type != T_STRING) {
            memcpy(out + o, text + t.start, t.len);
            o += t.len;
            continue;
        }
        out[o++] = '"';
        for (size_t i = t.start + 1; i + 1 < t.start + t.len; i++) {
            /* U+0000, escaped or as the bytes C0 80 (json_diag() let
             * nothing else through), becomes the stand-in: two input bytes
             * or more give six output bytes. */
            bool esc_nul = text[i] == '\\' && !strncmp(text + i + 1, "u0000", 5);
            if (esc_nul || (s[i] == 0xC0 && s[i + 1] == 0x80)) {
                memcpy(out + o, NUL_STANDIN_ESC, 6);
                o += 6;
                i += esc_nul ? 5 : 1;
                continue;
            }
            if (text[i] == '\\') {
                if (text[i + 1] != '\'')
                    out[o++] = '\\';
                out[o++] = text[++i];
            } else {
                if (text[i] == '"')
                    out[o++] = '\\';
                out[o++] = text[i];
            }
        }
        out[o++] = '"';
    }
    out[o] = 0;
    return out;
}

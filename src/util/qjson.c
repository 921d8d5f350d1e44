/* qemu-exact JSON and "Format specific information" output from jansson
 * trees. What qemu 7.2 does, and so what this file reproduces:
 *
 *  - Key order (qobject/qdict.c): a QDict is a 512-bucket hash table keyed
 *    by a gdbm/tdb-style string hash; iteration walks buckets 0..511 and,
 *    inside one bucket, the most recently inserted key first (new entries go
 *    to the head of the bucket's list; replacing a value keeps the entry).
 *    jansson keeps insertion order, so sorting by (bucket ascending,
 *    insertion index descending) gives qemu's order.
 *  - Bytes (qobject/json-writer.c, pretty mode): every member or element on
 *    its own line indented 4 spaces per open container, "key": value,
 *    ',' at line ends, the closing bracket on its own line at the parent's
 *    indent - so an empty container prints as "{" newline "}". Compact mode
 *    uses ", " between members and no newlines. Integers print as %lld,
 *    doubles as %.17g.
 *  - Strings: '"' '\\' and \b \f \n \r \t get their short escapes; the text
 *    is decoded as (modified) UTF-8, and every code point < 0x20 or >= 0x7F
 *    prints as \uXXXX (upper-case hex; a surrogate pair above U+FFFF);
 *    malformed sequences, surrogates, non-characters and overlong forms
 *    print as \uFFFD, except that C0 80 is U+0000.
 *  - Human dump (block/qapi.c dump_qdict/dump_qlist): "key: value" with '-'
 *    in keys shown as ' ', containers as "key:" then their members one level
 *    deeper, list items as "[i]:", 4 spaces per level. */
#include "util/qjson.h"
#include "util/kvopts.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

#define QDICT_BUCKETS 512u

unsigned qjson_qdict_bucket(const char *key)
{
    size_t len = strlen(key);
    /* The hash of qemu's tdb_hash(), in unsigned (mod 2^32) arithmetic. */
    uint32_t h = (uint32_t)0x238F13AFu * (uint32_t)len;

    for (size_t i = 0; key[i]; i++) {
        uint32_t c = (unsigned char)key[i];
        h += c << (i * 5 % 24);
    }
    h = 1103515243u * h + 12345u;
    return h % QDICT_BUCKETS;
}

struct keyslot {
    unsigned bucket;
    size_t idx;
    const char *key;
};

static int keyslot_cmp(const void *a, const void *b)
{
    const struct keyslot *x = a, *y = b;

    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    /* Newest insertion first within a bucket. */
    if (x->idx != y->idx)
        return x->idx > y->idx ? -1 : 1;
    return 0;
}

const char **qjson_key_order(const json_t *obj, size_t *n)
{
    size_t cnt = json_is_object(obj) ? json_object_size(obj) : 0;
    struct keyslot *slots = xcalloc(cnt ? cnt : 1, sizeof(*slots));
    const char **keys = xcalloc(cnt ? cnt : 1, sizeof(*keys));
    size_t i = 0;
    const char *key;
    json_t *val;

    if (cnt) {
        /* jansson's iterators are not const-qualified, but only read here. */
        json_object_foreach((json_t *)obj, key, val) {
            (void)val;
            if (i == cnt)
                break;
            slots[i].bucket = qjson_qdict_bucket(key);
            slots[i].idx = i;
            slots[i].key = key;
            i++;
        }
    }
    qsort(slots, i, sizeof(*slots), keyslot_cmp);
    for (size_t k = 0; k < i; k++)
        keys[k] = slots[k].key;
    free(slots);
    *n = i;
    return keys;
}

/* ---- strings ---- */

static bool codepoint_ok(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return false;
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
        return false;   /* non-characters */
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return false;   /* surrogates */
    return true;
}

/* Decode one code point at s (s[0] != 0); *len receives the bytes consumed.
 * Returns -1 for anything malformed. Never reads past a NUL. */
static int32_t utf8_next(const unsigned char *s, size_t *len)
{
    static const uint32_t min_cp[5] = { 0x80, 0x800, 0x10000, 0x200000, 0x4000000 };
    unsigned c = s[0], n = 0;
    uint32_t cp;

    *len = 1;
    if (c < 0x80)
        return (int32_t)c;
    if (c >= 0xFE || !(c & 0x40))
        return -1;      /* 0xFE/0xFF, or a stray continuation byte */
    for (unsigned mask = 0x80; c & mask; mask >>= 1)
        n++;
    /* n is 2..6 here: the lead byte has 0x40 set and is below 0xFE. */
    cp = c & ((0x80u >> n) - 1);
    for (unsigned i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;  /* consumed so far: the lead and i - 1 continuations */
        cp = cp << 6 | (s[i] & 0x3Fu);
        *len = i + 1;
    }
    if (!codepoint_ok(cp))
        return -1;
    if (cp < min_cp[n - 2] && !(cp == 0 && n == 2))
        return -1;      /* overlong, except the modified-UTF-8 NUL C0 80 */
    return (int32_t)cp;
}

static void put_quoted(struct strbuf *sb, const char *str)
{
    const unsigned char *p = (const unsigned char *)str;

    strbuf_putc(sb, '"');
    while (*p) {
        size_t len;
        int32_t cp = utf8_next(p, &len);

        p += len;
        switch (cp) {
        case '"':  strbuf_puts(sb, "\\\""); break;
        case '\\': strbuf_puts(sb, "\\\\"); break;
        case '\b': strbuf_puts(sb, "\\b"); break;
        case '\f': strbuf_puts(sb, "\\f"); break;
        case '\n': strbuf_puts(sb, "\\n"); break;
        case '\r': strbuf_puts(sb, "\\r"); break;
        case '\t': strbuf_puts(sb, "\\t"); break;
        default:
            if (cp < 0)
                cp = 0xFFFD;
            if (cp > 0xFFFF) {
                uint32_t v = (uint32_t)cp - 0x10000;
                strbuf_addf(sb, "\\u%04X\\u%04X", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else if (cp < 0x20 || cp >= 0x7F) {
                strbuf_addf(sb, "\\u%04X", (unsigned)cp);
            } else {
                strbuf_putc(sb, (char)cp);
            }
        }
    }
    strbuf_putc(sb, '"');
}

/* ---- the writer ---- */

struct writer {
    struct strbuf *sb;
    size_t start;       /* sb->len when we began: output may be appended */
    bool pretty;
    bool need_comma;
    size_t depth;
};

static void newline(struct writer *w)
{
    if (w->pretty) {
        strbuf_putc(w->sb, '\n');
        strbuf_addchars(w->sb, ' ', w->depth * 4);
    }
}

/* Separator before a value, then "name": when inside an object. */
static void begin_value(struct writer *w, const char *name)
{
    if (w->need_comma) {
        strbuf_putc(w->sb, ',');
        if (w->pretty)
            newline(w);
        else
            strbuf_putc(w->sb, ' ');
    } else {
        if (w->sb->len > w->start)
            newline(w);
        w->need_comma = true;
    }
    if (name) {
        put_quoted(w->sb, name);
        strbuf_puts(w->sb, ": ");
    }
}

static void write_value(struct writer *w, const char *name, const json_t *v)
{
    begin_value(w, name);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n;
        const char **keys = qjson_key_order(v, &n);

        strbuf_putc(w->sb, '{');
        w->depth++;
        w->need_comma = false;
        for (size_t i = 0; i < n; i++)
            write_value(w, keys[i], json_object_get(v, keys[i]));
        w->depth--;
        w->need_comma = true;
        newline(w);
        strbuf_putc(w->sb, '}');
        free(keys);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);

        strbuf_putc(w->sb, '[');
        w->depth++;
        w->need_comma = false;
        for (size_t i = 0; i < n; i++)
            write_value(w, NULL, json_array_get(v, i));
        w->depth--;
        w->need_comma = true;
        newline(w);
        strbuf_putc(w->sb, ']');
        break;
    }
    case JSON_STRING:
        put_quoted(w->sb, json_string_value(v));
        break;
    case JSON_INTEGER:
        strbuf_addf(w->sb, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        strbuf_addf(w->sb, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        strbuf_puts(w->sb, "true");
        break;
    case JSON_FALSE:
        strbuf_puts(w->sb, "false");
        break;
    case JSON_NULL:
        strbuf_puts(w->sb, "null");
        break;
    }
}

static void write_json(struct strbuf *sb, const json_t *v, bool pretty)
{
    struct writer w = { .sb = sb, .start = sb->len, .pretty = pretty };

    /* Make sure the buffer is a valid (possibly empty) string. */
    strbuf_add(sb, "", 0);
    if (v)
        write_value(&w, NULL, v);
}

void qjson_pretty(struct strbuf *sb, const json_t *v)
{
    write_json(sb, v, true);
}

void qjson_compact(struct strbuf *sb, const json_t *v)
{
    write_json(sb, v, false);
}

/* ---- human dump ---- */

static bool is_container(const json_t *v)
{
    return json_is_object(v) || json_is_array(v);
}

static void human_value(struct strbuf *sb, const json_t *v, int indent);

static void human_member(struct strbuf *sb, int indent, const json_t *v)
{
    if (is_container(v)) {
        strbuf_putc(sb, '\n');
        human_value(sb, v, indent + 1);
    } else {
        strbuf_putc(sb, ' ');
        human_value(sb, v, indent + 1);
        strbuf_putc(sb, '\n');
    }
}

static void human_value(struct strbuf *sb, const json_t *v, int indent)
{
    size_t pad = indent > 0 ? (size_t)indent * 4 : 0;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n;
        const char **keys = qjson_key_order(v, &n);

        for (size_t i = 0; i < n; i++) {
            strbuf_addchars(sb, ' ', pad);
            for (const char *k = keys[i]; *k; k++)
                strbuf_putc(sb, *k == '-' ? ' ' : *k);
            strbuf_putc(sb, ':');
            human_member(sb, indent, json_object_get(v, keys[i]));
        }
        free(keys);
        break;
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); i++) {
            strbuf_addchars(sb, ' ', pad);
            strbuf_addf(sb, "[%zu]:", i);
            human_member(sb, indent, json_array_get(v, i));
        }
        break;
    case JSON_STRING:
        strbuf_puts(sb, json_string_value(v));
        break;
    case JSON_INTEGER:
        strbuf_addf(sb, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        strbuf_addf(sb, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        strbuf_puts(sb, "true");
        break;
    case JSON_FALSE:
        strbuf_puts(sb, "false");
        break;
    case JSON_NULL:
        /* qemu never has a null in format-specific data (it would abort). */
        strbuf_puts(sb, "null");
        break;
    }
}

void qjson_human(struct strbuf *sb, const json_t *v, int indent)
{
    strbuf_add(sb, "", 0);
    if (v)
        human_value(sb, v, indent);
}

json_t *qjson_opt_value(const struct kvopt *kv)
{
    switch (kv->json_type) {
    case 'i':
        return json_integer((json_int_t)strtoll(kv->val, NULL, 10));
    case 'r':
        return json_real(strtod(kv->val, NULL));
    case 'b':
        return json_boolean(!strcmp(kv->val, "on"));
    default:
        return json_string(kv->val);
    }
}

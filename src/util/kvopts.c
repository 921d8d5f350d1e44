/* key=value option lists with the semantics of qemu 7.2's QemuOpts
 * (util/qemu-option.c), as qemu-img uses them for -o, --object and
 * --image-opts:
 *  - elements are separated by ',', and ",," inside a value is a literal
 *    comma; a key ends at the first '=' or ',';
 *  - an element without '=' is a flag: "foo" means foo=on, "nofoo" means
 *    foo=off (the "no" prefix is stripped even from "no" itself); "help" and
 *    "?" in flag form ask for help;
 *  - with an implied key, the first element without '=' is that key's value;
 *  - values are kept as strings in order, the last setting of a key wins;
 *  - "id" is never a create option: qemu drops it there, so validation skips
 *    it, but it stays readable for --object.
 * Type checks (bool/number/size) reproduce qemu's messages word for word. */
#include "util/kvopts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/size.h"
#include "util/xalloc.h"

void kvopts_init(struct kvopts *o)
{
    o->v = NULL;
    o->n = 0;
    o->cap = 0;
    o->help = false;
}

void kvopts_release(struct kvopts *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].val);
    }
    free(o->v);
    kvopts_init(o);
}

/* Takes ownership of key and val. */
static void kvopts_push(struct kvopts *o, char *key, char *val)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        o->v = xreallocarray(o->v, cap, sizeof(*o->v));
        o->cap = cap;
    }
    o->v[o->n].key = key;
    o->v[o->n].val = val;
    o->v[o->n].json_type = 0;
    o->n++;
}

int kvopts_set(struct kvopts *o, const char *key, const char *val)
{
    kvopts_push(o, xstrdup(key), xstrdup(val));
    return 0;
}

int kvopts_set_json(struct kvopts *o, const char *key, const char *val, char json_type)
{
    kvopts_push(o, xstrdup(key), xstrdup(val));
    o->v[o->n - 1].json_type = json_type;
    return 0;
}

static const struct kvopt *kvopts_find(const struct kvopts *o, const char *key)
{
    for (size_t i = o->n; i > 0; i--) {
        if (strcmp(o->v[i - 1].key, key) == 0)
            return &o->v[i - 1];
    }
    return NULL;
}

const char *kvopts_get(const struct kvopts *o, const char *key)
{
    const struct kvopt *kv = kvopts_find(o, key);
    return kv ? kv->val : NULL;
}

bool kvopts_has(const struct kvopts *o, const char *key)
{
    return kvopts_find(o, key) != NULL;
}

void kvopts_del(struct kvopts *o, const char *key)
{
    size_t j = 0;

    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->v[i].key, key) == 0) {
            free(o->v[i].key);
            free(o->v[i].val);
        } else {
            o->v[j++] = o->v[i];
        }
    }
    o->n = j;
}

char *kvopts_take(struct kvopts *o, const char *key)
{
    const struct kvopt *kv = kvopts_find(o, key);
    char *val;

    if (!kv)
        return NULL;
    val = xstrdup(kv->val);
    kvopts_del(o, key);
    return val;
}

int kvopts_copy(struct kvopts *dst, const struct kvopts *src)
{
    for (size_t i = 0; i < src->n; i++)
        kvopts_set_json(dst, src->v[i].key, src->v[i].val, src->v[i].json_type);
    dst->help = dst->help || src->help;
    return 0;
}

/* A value runs to the first single ','; ",," is a literal comma. Returns
 * the position of the terminating ',' or NUL. */
static const char *scan_value(const char *p, char **out)
{
    size_t len = 0;
    const char *q;
    char *val;

    for (q = p; *q; q++) {
        if (*q == ',') {
            if (q[1] != ',')
                break;
            q++;
        }
        len++;
    }
    val = xmalloc(len + 1);
    len = 0;
    for (q = p; *q; q++) {
        if (*q == ',') {
            if (q[1] != ',')
                break;
            q++;
        }
        val[len++] = *q;
    }
    val[len] = '\0';
    *out = val;
    return q;
}

static bool is_help_word(const char *s)
{
    return strcmp(s, "?") == 0 || strcmp(s, "help") == 0;
}

int kvopts_parse(struct kvopts *o, const char *str, const char *implied_key, struct err *err)
{
    const char *p = str;
    const char *first = implied_key;

    if (!str)
        return err_set(err, EINVAL, "Missing option list");
    while (*p) {
        size_t len = strcspn(p, "=,");
        char *key, *val;

        if (p[len] == '=') {
            key = xstrndup(p, len);
            p = scan_value(p + len + 1, &val);
        } else if (first) {
            key = xstrdup(first);
            p = scan_value(p, &val);
        } else {
            key = xstrndup(p, len);
            p += len;
            if (len >= 2 && strncmp(key, "no", 2) == 0) {
                memmove(key, key + 2, len - 2 + 1);
                val = xstrdup("off");
            } else {
                val = xstrdup("on");
                if (is_help_word(key))
                    o->help = true;
            }
        }
        first = NULL;
        kvopts_push(o, key, val);
        if (*p == ',')
            p++;
    }
    return 0;
}

bool kvopts_list_valid(const char *s)
{
    size_t len = strlen(s), i;

    if (!s[0] || s[0] == ',')
        return false;
    for (i = len; i > 0 && s[i - 1] == ','; i--)
        ;
    /* An odd run of trailing commas would end in a lone separator. */
    return (len - i) % 2 == 0;
}

/* --- typed parsing, qemu's parse_option_* / qapi_bool_parse --- */

int kvopts_parse_bool(const char *name, const char *value, bool *out, struct err *err)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };

    for (size_t i = 0; i < 4; i++) {
        if (strcmp(value, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(value, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return err_set(err, EINVAL, "Parameter '%s' expects 'on' or 'off'", name);
}

int kvopts_parse_number(const char *name, const char *value, uint64_t *out, struct err *err)
{
    int r = parse_u64_wrapping(value, 0, out);

    if (r == -ERANGE)
        return err_set(err, EINVAL, "Value '%s' is too large for parameter '%s'", value, name);
    if (r)
        return err_set(err, EINVAL, "Parameter '%s' expects a number", name);
    return 0;
}

int kvopts_parse_size(const char *name, const char *value, uint64_t *out, struct err *err)
{
    int r = size_parse(value, 'B', out);

    if (r == -ERANGE)
        return err_set(err, EINVAL, "Value '%s' is out of range for parameter '%s'", value, name);
    if (r)
        return err_set(err, EINVAL,
                       "Parameter '%s' expects a non-negative number below 2^64\n"
                       "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                       "and exabytes, respectively.", name);
    return 0;
}

int kvopts_get_bool(const struct kvopts *o, const char *key, bool def, bool *out, struct err *err)
{
    const char *v = kvopts_get(o, key);

    if (!v) {
        *out = def;
        return 0;
    }
    return kvopts_parse_bool(key, v, out, err);
}

int kvopts_get_size(const struct kvopts *o, const char *key, uint64_t def, uint64_t *out, struct err *err)
{
    const char *v = kvopts_get(o, key);

    if (!v) {
        *out = def;
        return 0;
    }
    return kvopts_parse_size(key, v, out, err);
}

int kvopts_get_number(const struct kvopts *o, const char *key, uint64_t def, uint64_t *out, struct err *err)
{
    const char *v = kvopts_get(o, key);

    if (!v) {
        *out = def;
        return 0;
    }
    return kvopts_parse_number(key, v, out, err);
}

/* --- option tables --- */

const struct opt_desc *opt_desc_find(const struct opt_desc *table, const char *name)
{
    for (; table && table->name; table++) {
        if (strcmp(table->name, name) == 0)
            return table;
    }
    return NULL;
}

static const struct opt_desc *tables_find(const struct opt_desc *const *tables, const char *name)
{
    for (; tables && *tables; tables++) {
        const struct opt_desc *d = opt_desc_find(*tables, name);
        if (d)
            return d;
    }
    return NULL;
}

const char *kvopts_find_unknown(const struct kvopts *o, const struct opt_desc *const *tables)
{
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->v[i].key, "id") != 0 && !tables_find(tables, o->v[i].key))
            return o->v[i].key;
    }
    return NULL;
}

static int check_value(const struct opt_desc *d, const char *val, struct err *err)
{
    bool b;
    uint64_t u;

    switch (d->type) {
    case OPT_STRING:
        return 0;
    case OPT_BOOL:
        return kvopts_parse_bool(d->name, val, &b, err);
    case OPT_NUMBER:
        return kvopts_parse_number(d->name, val, &u, err);
    case OPT_SIZE:
        return kvopts_parse_size(d->name, val, &u, err);
    }
    return 0;
}

int kvopts_validate(const struct kvopts *o, const struct opt_desc *const *tables, struct err *err)
{
    for (size_t i = 0; i < o->n; i++) {
        const struct opt_desc *d;
        int r;

        if (strcmp(o->v[i].key, "id") == 0)
            continue;
        d = tables_find(tables, o->v[i].key);
        if (!d)
            return err_set(err, EINVAL, "Invalid parameter '%s'", o->v[i].key);
        r = check_value(d, o->v[i].val, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void escaped_put(struct strbuf *sb, const char *s)
{
    for (; *s; s++) {
        if (*s == ',')
            strbuf_putc(sb, ',');
        strbuf_putc(sb, *s);
    }
}

void kvopts_print(struct strbuf *sb, const struct kvopts *o,
                  const struct opt_desc *const *tables, const char *sep)
{
    const char *cur = "";

    for (size_t t = 0; tables && tables[t]; t++) {
        for (const struct opt_desc *d = tables[t]; d->name; d++) {
            const struct kvopt *kv;
            const char *val;

            /* A name already listed by an earlier table was merged away. */
            if (tables_find(tables, d->name) != d)
                continue;
            kv = kvopts_find(o, d->name);
            val = kv ? kv->val : d->def;
            if (!val)
                continue;
            strbuf_addf(sb, "%s%s=", cur, d->name);
            if (d->type == OPT_STRING) {
                escaped_put(sb, val);
            } else if ((d->type == OPT_SIZE || d->type == OPT_NUMBER) && kv) {
                uint64_t u = 0;
                int r = d->type == OPT_SIZE ? size_parse(val, 'B', &u)
                                            : parse_u64_wrapping(val, 0, &u);
                if (r == 0)
                    strbuf_addf(sb, "%" PRId64, (int64_t)u);
                else
                    strbuf_puts(sb, val);
            } else {
                strbuf_puts(sb, val);
            }
            cur = sep;
        }
    }
}

void kvopts_escape_append(char *buf, size_t size, const char *s)
{
    size_t n;

    if (size == 0)
        return;
    n = strnlen(buf, size);
    if (n == size) {
        /* Not terminated: nothing sane to append to. */
        buf[size - 1] = '\0';
        return;
    }
    for (; *s; s++) {
        size_t need = *s == ',' ? 2 : 1;
        if (n + need >= size)
            break;      /* truncate, but never split a ",," pair */
        if (*s == ',')
            buf[n++] = ',';
        buf[n++] = *s;
    }
    buf[n] = '\0';
}

void kvopts_escape_strbuf(struct strbuf *sb, const char *s)
{
    escaped_put(sb, s);
}

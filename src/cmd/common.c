/* Shared command plumbing: messages in qemu-img's shapes, option helpers,
 * --object secrets and opening images the way qemu-img's img_open does. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/secret.h"
#include "util/size.h"
#include "util/xalloc.h"

const char *prog_name = "qimg";

static void vreport(const char *prefix, const char *fmt, va_list ap)
{
    fflush(stdout);
    fprintf(stderr, "%s: %s", prog_name, prefix);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void error_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("", fmt, ap);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("warning: ", fmt, ap);
    va_end(ap);
}

noreturn void error_exit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information\n", prog_name);
    exit(EXIT_FAILURE);
}

noreturn void missing_argument(const char *option)
{
    error_exit("missing argument for option '%s'", option);
}

noreturn void unrecognized_option(const char *option)
{
    error_exit("unrecognized option '%s'", option);
}

int parse_output_format(const char *s, enum output_format *out)
{
    if (!s || !strcmp(s, "human")) {
        *out = OFORMAT_HUMAN;
        return 0;
    }
    if (!strcmp(s, "json")) {
        *out = OFORMAT_JSON;
        return 0;
    }
    error_report("--output must be used with human or json as argument.");
    return -1;
}

int parse_cache_mode(const char *mode, int *flags)
{
    int f = *flags & ~(BLK_O_NOCACHE | BLK_O_NO_FLUSH | BLK_O_WRITETHROUGH);

    if (!strcmp(mode, "none") || !strcmp(mode, "off"))
        f |= BLK_O_NOCACHE;
    else if (!strcmp(mode, "directsync"))
        f |= BLK_O_NOCACHE | BLK_O_WRITETHROUGH;
    else if (!strcmp(mode, "writeback"))
        ;
    else if (!strcmp(mode, "unsafe"))
        f |= BLK_O_NO_FLUSH;
    else if (!strcmp(mode, "writethrough"))
        f |= BLK_O_WRITETHROUGH;
    else
        return -1;
    *flags = f;
    return 0;
}

int64_t cvtnum(const char *name, const char *value)
{
    uint64_t v;
    int r = size_parse(value, 'B', &v);

    if (r < 0 && r != -ERANGE) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (r == -ERANGE || v > INT64_MAX) {
        error_report("Invalid %s specified. Must be between 0 and %lld.", name,
                     (long long)INT64_MAX);
        return -1;
    }
    return (int64_t)v;
}

void log_to_stderr(void *opaque, const char *line)
{
    (void)opaque;
    fflush(stdout);
    fprintf(stderr, "%s\n", line);
}

/* --- secrets --- */

static char *read_whole_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static char *base64_decode_str(const char *in)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in);
    char *out = xmalloc(n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;

    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            break;
        const char *p = strchr(tbl, in[i]);
        if (!p || !in[i]) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (unsigned)(p - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return out;
}

int object_add(const char *spec)
{
    struct kvopts o;
    struct err e;
    int r = -1;

    kvopts_init(&o);
    err_init(&e);
    if (kvopts_parse(&o, spec, "qom-type", &e) < 0) {
        error_report("%s", e.msg);
        goto out;
    }
    const char *type = kvopts_get(&o, "qom-type");
    const char *id = kvopts_get(&o, "id");
    if (!type || strcmp(type, "secret")) {
        error_report("Parameter 'qom-type' does not accept value '%s'", type ? type : "");
        goto out;
    }
    if (!id) {
        error_report("Parameter 'id' is missing");
        goto out;
    }
    const char *data = kvopts_get(&o, "data");
    const char *file = kvopts_get(&o, "file");
    const char *format = kvopts_get(&o, "format");
    char *value;
    if (data && file) {
        error_report("'data' and 'file' are mutually exclusive");
        goto out;
    }
    if (data)
        value = xstrdup(data);
    else if (file) {
        value = read_whole_file(file);
        if (!value) {
            error_report("Unable to read %s: %s", file, strerror(errno ? errno : EIO));
            goto out;
        }
    } else {
        error_report("Either 'file' or 'data' must be provided");
        goto out;
    }
    if (format && !strcmp(format, "base64")) {
        char *dec = base64_decode_str(value);
        free(value);
        if (!dec) {
            error_report("Failed to decode base64 data");
            goto out;
        }
        value = dec;
    }
    secret_add(id, value, strlen(value));
    r = 0;
out:
    kvopts_release(&o);
    return r;
}

const char *secret_lookup(const char *id, struct err *err)
{
    return secret_get(id, NULL, err);
}

/* --- opening images --- */

static void warn_probed_raw(const char *filename)
{
    fflush(stdout);
    fprintf(stderr,
            "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw images, "
            "write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the restrictions.\n",
            filename);
}

/* json:{...} filenames: the object flattened into dotted keys
 * ("file": {"driver": "http"} -> file.driver=http), as qemu does. */
static int json_flatten(struct kvopts *o, const char *prefix, json_t *v, struct err *err)
{
    const char *k;
    json_t *m;
    char buf[64];

    json_object_foreach(v, k, m) {
        char *key = prefix[0] ? xasprintf("%s.%s", prefix, k) : xstrdup(k);
        int r = 0;
        if (json_is_object(m))
            r = json_flatten(o, key, m, err);
        else if (json_is_string(m))
            kvopts_set(o, key, json_string_value(m));
        else if (json_is_integer(m)) {
            snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(m));
            kvopts_set(o, key, buf);
        } else if (json_is_real(m)) {
            snprintf(buf, sizeof(buf), "%.17g", json_real_value(m));
            kvopts_set(o, key, buf);
        } else if (json_is_boolean(m))
            kvopts_set(o, key, json_is_true(m) ? "on" : "off");
        else
            r = err_set(err, EINVAL, "Invalid JSON value for '%s'", key);
        free(key);
        if (r < 0)
            return r;
    }
    return 0;
}

static int json_filename_opts(const char *s, struct kvopts *o, struct err *err)
{
    json_error_t je;
    json_t *v = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    int r;

    if (!v)
        return err_set(err, EINVAL, "Could not parse the JSON options");
    if (!json_is_object(v)) {
        json_decref(v);
        return err_set(err, EINVAL, "Invalid JSON object given");
    }
    r = json_flatten(o, "", v, err);
    json_decref(v);
    return r;
}

/* Does this option set name a protocol that needs no filename
 * (driver=nbd,server...; file.driver=http,file.url=...)? */
static bool names_network_protocol(const char *fmt, const struct kvopts *opts)
{
    const struct blk_driver *d = fmt ? blk_find_format(fmt) : NULL;
    const char *fd = kvopts_get(opts, "file.driver");

    if (d && !blk_driver_is_format(d) && strcmp(fmt, "file"))
        return true;
    return fd && strcmp(fd, "file");
}

struct bds *img_open(const struct img_open_args *a)
{
    struct err e;
    struct kvopts opts;
    struct bds *bs;
    const char *filename = a->filename;
    const char *fmt = a->fmt;
    char *fn_owned = NULL, *fmt_owned = NULL;

    err_init(&e);
    kvopts_init(&opts);
    bool is_json = !a->image_opts && !strncmp(a->filename, "json:", 5);
    if (is_json) {
        if (json_filename_opts(a->filename + 5, &opts, &e) < 0) {
            error_report("Could not open '%s': %s", a->filename, e.msg);
            kvopts_release(&opts);
            return NULL;
        }
    }
    if (a->image_opts || is_json) {
        if (!is_json && kvopts_parse(&opts, a->filename, NULL, &e) < 0) {
            error_report("%s", e.msg);
            kvopts_release(&opts);
            return NULL;
        }
        fmt_owned = kvopts_take(&opts, "driver");
        if (!fmt_owned && fmt)
            fmt_owned = xstrdup(fmt);
        fn_owned = kvopts_take(&opts, "file.filename");
        if (!fn_owned)
            fn_owned = kvopts_take(&opts, "filename");
        if (kvopts_get(&opts, "file.driver") && !strcmp(kvopts_get(&opts, "file.driver"), "file"))
            kvopts_del(&opts, "file.driver");
        if (!fn_owned && names_network_protocol(fmt_owned, &opts))
            fn_owned = xstrdup("");
        if (!fn_owned) {
            error_report("Could not open '%s': A block device must be specified for \"file\"",
                         a->filename);
            kvopts_release(&opts);
            free(fmt_owned);
            return NULL;
        }
        filename = fn_owned;
        fmt = fmt_owned;
    }
    for (size_t i = 0; !a->image_opts && a->key_secrets && i < a->key_secrets->n; i++) {
        const struct kvopt *kv = &a->key_secrets->v[i];
        size_t kl = strlen(kv->key);
        if (kl >= 10 && !strcmp(kv->key + kl - 10, "key-secret"))
            kvopts_set(&opts, kv->key, kv->val);
    }
    bs = blk_open(filename, fmt, &opts, a->flags, &e);
    if (!bs) {
        error_report("Could not open '%s': %s",
                     a->image_opts || is_json ? a->filename : filename, e.msg);
    } else if ((a->flags & BLK_O_RDWR) && bs->probed && !strcmp(blk_driver_name(bs->drv), "raw")) {
        warn_probed_raw(filename);
    }
    kvopts_release(&opts);
    free(fn_owned);
    free(fmt_owned);
    return bs;
}

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
    if (a->image_opts) {
        if (kvopts_parse(&opts, a->filename, NULL, &e) < 0) {
            error_report("%s", e.msg);
            kvopts_release(&opts);
            return NULL;
        }
        fmt_owned = kvopts_take(&opts, "driver");
        fn_owned = kvopts_take(&opts, "file.filename");
        if (!fn_owned)
            fn_owned = kvopts_take(&opts, "filename");
        kvopts_del(&opts, "file.driver");
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
        error_report("Could not open '%s': %s", a->image_opts ? a->filename : filename, e.msg);
    } else if ((a->flags & BLK_O_RDWR) && bs->probed && !strcmp(blk_driver_name(bs->drv), "raw")) {
        warn_probed_raw(filename);
    }
    kvopts_release(&opts);
    free(fn_owned);
    free(fmt_owned);
    return bs;
}

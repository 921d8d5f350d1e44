/* Shared command plumbing: messages in qemu-img's shapes, option helpers,
 * --object secrets and opening images the way qemu-img's img_open does. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/jsondiag.h"
#include "util/secret.h"
#include "util/size.h"
#include "util/strbuf.h"
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

/* --- --object: qemu's keyval syntax, ObjectOptions visit, secret objects --- */

/* The types "--object help" lists: the user-creatable QOM types of
 * qemu-img 7.2 (only "secret" is implemented). */
static const char *const object_types[] = {
    "authz-list", "authz-list-file", "authz-simple", "main-loop", "pr-manager-helper",
    "secret", "secret_keyring", "thread-context", "throttle-group", "tls-cipher-suites",
    "tls-creds-anon", "tls-creds-psk", "tls-creds-x509", NULL,
};

/* Every --object id given so far: ids share one namespace, whatever the type. */
static char **object_ids;
static size_t n_object_ids;

/* qemu's parse_qapi_name(s, false): a letter, then letters, digits, '-', '_'. */
static size_t qapi_name_len(const char *s, size_t max)
{
    size_t i = 0;
    if (!max || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    while (i < max && (isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_'))
        i++;
    return i;
}

/* keyval_parse(spec, "qom-type"): "," separates, ",," is a literal comma,
 * the first element may omit "qom-type=", "help" / "?" elements ask for
 * help, a later key repeated replaces the earlier value. */
static int keyval_parse_object(const char *spec, struct kvopts *o, bool *help)
{
    const char *p = spec;
    bool first = true;

    while (*p) {
        size_t len = strcspn(p, "=,");
        const char *key;
        size_t klen;
        if (len && p[len] != '=') {
            if ((len == 4 && !strncmp(p, "help", 4)) || (len == 1 && p[0] == '?')) {
                *help = true;
                p += len;
                if (*p == ',')
                    p++;
                first = false;
                continue;
            }
            if (!first) {
                error_report("Expected '=' after parameter '%.*s'", (int)len, p);
                return -1;
            }
            key = "qom-type";
            klen = 8;
        } else {
            /* key fragments separated by '.', each a QAPI name */
            size_t i = 0;
            for (;;) {
                size_t n = qapi_name_len(p + i, len - i);
                if (!n || (i + n < len && p[i + n] != '.')) {
                    error_report("Invalid parameter '%.*s'", (int)len, p);
                    return -1;
                }
                i += n + 1;
                if (i >= len)
                    break;
            }
            key = p;
            klen = len;
            p += len + 1;       /* past '=' */
        }
        struct strbuf v = STRBUF_INIT;
        for (; *p; p++) {
            if (*p == ',') {
                if (p[1] != ',')
                    break;
                p++;
            }
            strbuf_addf(&v, "%c", *p);
        }
        if (*p == ',')
            p++;
        char *k = xstrndup(key, klen);
        kvopts_set(o, k, strbuf_str(&v));
        free(k);
        strbuf_release(&v);
        first = false;
    }
    return 0;
}

/* glib's g_base64_decode() after qemu's check of the alphabet: groups of
 * four, '=' counts as zero bits and drops output bytes, a partial group at
 * the end is discarded. */
static char *secret_base64_decode(const char *in, size_t *outlen)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    char *out;
    uint32_t v = 0;
    int i = 0;
    char last0 = 0, last1 = 0;

    if (strspn(in, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n") != n) {
        error_report("Base64 data contains invalid characters");
        return NULL;
    }
    out = xmalloc(n / 4 * 3 + 1);
    for (size_t k = 0; k < n; k++) {
        char c = in[k];
        const char *t = c == '=' ? NULL : strchr(tbl, c);
        if (c != '=' && (!t || !c))
            continue;
        last1 = last0;
        last0 = c;
        v = (v << 6) | (uint32_t)(t ? t - tbl : 0);
        if (++i == 4) {
            out[o++] = (char)(v >> 16);
            if (last1 != '=')
                out[o++] = (char)(v >> 8);
            if (last0 != '=')
                out[o++] = (char)v;
            i = 0;
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* g_file_get_contents() with glib's messages. */
static char *read_secret_file(const char *path, size_t *outlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!f) {
        error_report("Unable to read %s: Failed to open file \u201c%s\u201d: %s", path, path,
                     strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20)) {
                error_report("Unable to read %s: Error reading file \u201c%s\u201d: %s", path, path,
                             strerror(EFBIG));
                goto fail;
            }
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096) {
            if (ferror(f)) {
                error_report("Unable to read %s: Error reading file \u201c%s\u201d: %s", path,
                             path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    buf[len] = '\0';
    *outlen = len;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

static void object_print_help(const char *type)
{
    if (type && !strcmp(type, "secret")) {
        printf("secret options:\n  data=<string>\n  file=<string>\n"
               "  format=<QCryptoSecretFormat>\n  iv=<string>\n  keyid=<string>\n");
        return;
    }
    printf("List of user creatable objects:\n");
    for (size_t i = 0; object_types[i]; i++)
        printf("  %s\n", object_types[i]);
}

static bool id_wellformed(const char *id)
{
    if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z')))
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._", *p))
            return false;
    return true;
}

/* user_creatable_process_cmdline(): exits 0 after printing help. */
int object_add(const char *spec)
{
    static const char *const secret_keys[] = {
        "qom-type", "id", "data", "file", "format", "iv", "keyid", NULL,
    };
    struct kvopts o;
    bool help = false;
    char *value = NULL;
    size_t vlen = 0;
    int r = -1;

    kvopts_init(&o);
    if (keyval_parse_object(spec, &o, &help) < 0)
        goto out;
    const char *type = kvopts_get(&o, "qom-type");
    if (help) {
        object_print_help(type);
        exit(EXIT_SUCCESS);
    }
    if (!type) {
        error_report("Parameter 'qom-type' is missing");
        goto out;
    }
    if (strcmp(type, "secret")) {
        error_report("Parameter 'qom-type' does not accept value '%s'", type);
        goto out;
    }
    const char *id = kvopts_get(&o, "id");
    if (!id) {
        error_report("Parameter 'id' is missing");
        goto out;
    }
    const char *format = kvopts_get(&o, "format");
    if (format && strcmp(format, "raw") && strcmp(format, "base64")) {
        error_report("Parameter 'format' does not accept value '%s'", format);
        goto out;
    }
    for (size_t i = 0; i < o.n; i++) {
        size_t k = 0;
        while (secret_keys[k] && strcmp(secret_keys[k], o.v[i].key))
            k++;
        if (!secret_keys[k]) {
            /* a dotted key is a nested object named by its first part */
            error_report("Parameter '%.*s' is unexpected", (int)strcspn(o.v[i].key, "."),
                         o.v[i].key);
            goto out;
        }
    }
    if (!id_wellformed(id)) {
        error_report("Parameter 'id' expects an identifier");
        fprintf(stderr, "Identifiers consist of letters, digits, '-', '.', '_', "
                "starting with a letter.\n");
        goto out;
    }
    for (size_t i = 0; i < n_object_ids; i++) {
        if (!strcmp(object_ids[i], id)) {
            error_report("attempt to add duplicate property '%s' to object (type 'container')",
                         id);
            goto out;
        }
    }
    const char *data = kvopts_get(&o, "data");
    const char *file = kvopts_get(&o, "file");
    const char *keyid = kvopts_get(&o, "keyid");
    if (file && data) {
        error_report("'file' and 'data' are mutually exclusive");
        goto out;
    }
    if (file) {
        if (!(value = read_secret_file(file, &vlen)))
            goto out;
    } else if (data) {
        value = xstrdup(data);
        vlen = strlen(data);
    } else {
        error_report("Either 'file' or 'data' must be provided");
        goto out;
    }
    if (keyid) {
        /* AES-256-CBC under another secret: its preconditions as qemu
         * checks them; the decryption itself is not implemented. */
        struct err e;
        size_t klen = 0;
        err_init(&e);
        if (!secret_get(keyid, &klen, &e)) {
            error_report("%s", e.msg);
            goto out;
        }
        if (klen != 32) {
            error_report("Key should be 32 bytes in length");
            goto out;
        }
        if (!kvopts_get(&o, "iv")) {
            error_report("IV is required to decrypt secret");
            goto out;
        }
        error_report("Decrypting secret '%s' with 'keyid' is not supported", id);
        goto out;
    }
    if (format && !strcmp(format, "base64")) {
        char *dec = secret_base64_decode(value, &vlen);
        if (!dec)
            goto out;
        free(value);
        value = dec;
    }
    secret_add(id, value, vlen);
    value = NULL;
    object_ids = xrealloc(object_ids, (n_object_ids + 1) * sizeof(*object_ids));
    object_ids[n_object_ids++] = xstrdup(id);
    r = 0;
out:
    free(value);
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
        char *name = json_diag_unmask(k);
        char *key = prefix[0] ? xasprintf("%s.%s", prefix, name) : xstrdup(name);
        int r = 0;
        free(name);
        if (json_is_object(m))
            r = json_flatten(o, key, m, err);
        else if (json_is_string(m)) {
            char *val = json_diag_unmask(json_string_value(m));
            kvopts_set(o, key, val);
            free(val);
        } else if (json_is_integer(m)) {
            snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(m));
            kvopts_set_json(o, key, buf, 'i');
        } else if (json_is_real(m)) {
            snprintf(buf, sizeof(buf), "%.17g", json_real_value(m));
            kvopts_set_json(o, key, buf, 'r');
        } else if (json_is_boolean(m))
            kvopts_set_json(o, key, json_is_true(m) ? "on" : "off", 'b');
        else if (json_is_null(m))
            kvopts_set_json(o, key, "", 'n');   /* "backing": null */
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
    json_t *v;
    char *diag = json_diag(s), *strict;
    int r;

    /* qemu's own reader decides first (its message, its extensions);
     * jansson then reads the text rewritten in strict JSON. */
    if (diag) {
        r = err_set(err, EINVAL, "Could not parse the JSON options: %s", diag);
        free(diag);
        return r;
    }
    strict = json_diag_normalize(s);
    v = json_loads(strict, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    free(strict);
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
 * (driver=nbd,server...; file.driver=http,file.url=...)? prefix is where
 * the bottom node's options start ("file.", "file.file.", ...). */
static bool names_network_protocol(const char *fmt, const struct kvopts *opts,
                                   const char *prefix)
{
    const struct blk_driver *d = fmt ? blk_find_format(fmt) : NULL;
    char *key = xasprintf("%sdriver", prefix);
    const char *fd = kvopts_get(opts, key);

    free(key);
    if (d && !blk_driver_is_format(d) && strcmp(fmt, "file"))
        return true;
    return fd && strcmp(fd, "file");
}

/* The options of the bottom node: past every "file." level whose driver
 * is a format (driver=qcow2,file.driver=raw,file.file.filename=x). The
 * caller frees the prefix. */
static char *bottom_prefix(const struct kvopts *opts)
{
    char *prefix = xstrdup("file.");

    for (int depth = 0; depth < 16; depth++) {
        char *key = xasprintf("%sdriver", prefix);
        const char *name = kvopts_get(opts, key);
        const struct blk_driver *d = name ? blk_find_format(name) : NULL;
        free(key);
        if (!d || !blk_driver_is_format(d))
            break;
        char *deeper = xasprintf("%sfile.", prefix);
        free(prefix);
        prefix = deeper;
    }
    return prefix;
}

struct bds *img_open(const struct img_open_args *a)
{
    struct err e;
    struct kvopts opts;
    struct bds *bs;
    const char *filename = a->filename;
    const char *fmt = a->fmt;
    char *fn_owned = NULL, *fmt_owned = NULL;

    if (a->image_opts && a->fmt) {
        error_report("--image-opts and --format are mutually exclusive");
        return NULL;
    }
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
        /* --image-opts: "file" is the implied key, as in qemu's "source" options */
        if (!is_json && kvopts_parse(&opts, a->filename, "file", &e) < 0) {
            error_report("%s", e.msg);
            kvopts_release(&opts);
            return NULL;
        }
        /* bdrv_fill_options() looks a text "driver" up before anything
         * else (a JSON number or boolean there is not seen as a driver) */
        bool drv_text = false;
        for (size_t i = 0; i < opts.n; i++)
            if (!strcmp(opts.v[i].key, "driver"))
                drv_text = !opts.v[i].json_type;
        fmt_owned = kvopts_take(&opts, "driver");
        if (!fmt_owned && fmt)
            fmt_owned = xstrdup(fmt);
        const struct blk_driver *d = fmt_owned ? blk_find_format(fmt_owned) : NULL;
        if (drv_text && !blk_qemu_has_driver(fmt_owned)) {
            error_report("Could not open '%s': Unknown driver '%s'", a->filename, fmt_owned);
            kvopts_release(&opts);
            free(fmt_owned);
            return NULL;
        }
        bool protocol = d && !blk_driver_is_format(d);
        bool file_opts = false;
        for (size_t i = 0; i < opts.n; i++)
            file_opts |= !strncmp(opts.v[i].key, "file.", 5);
        const char *msg = NULL;
        char *ref = kvopts_take(&opts, "file");
        /* bdrv_open()'s checks of "file" (a node reference), "filename"
         * and the file.* options, in its order */
        if (ref && file_opts)
            msg = "Cannot reference an existing block device with additional options or a new filename";
        else if (!fmt_owned && !ref && !file_opts)
            msg = "Must specify either driver or file";
        else if (ref && protocol)
            err_set(&e, EINVAL, "Block protocol '%s' doesn't support the option 'file'", fmt_owned);
        else if (ref)
            err_set(&e, ENOENT, "Cannot find device='%s' nor node-name='%s'", ref, ref);
        else if (protocol && !kvopts_has(&opts, "filename") && kvopts_has(&opts, "file.filename") &&
                 !strcmp(fmt_owned, "file"))
            err_set(&e, EINVAL, "The '%s' block driver requires a file name", fmt_owned);
        free(ref);
        if (msg || e.set) {
            error_report("Could not open '%s': %s", a->filename, msg ? msg : e.msg);
            kvopts_release(&opts);
            free(fmt_owned);
            return NULL;
        }
        char *prefix = bottom_prefix(&opts);
        char *fkey = xasprintf("%sfilename", prefix);
        char *dkey = xasprintf("%sdriver", prefix);
        fn_owned = kvopts_take(&opts, fkey);
        /* a top-level filename is the protocol's: a format driver has none */
        if (!fn_owned && !(d && blk_driver_is_format(d)))
            fn_owned = kvopts_take(&opts, "filename");
        if (kvopts_get(&opts, dkey) && !strcmp(kvopts_get(&opts, dkey), "file"))
            kvopts_del(&opts, dkey);
        if (!fn_owned && names_network_protocol(fmt_owned, &opts, prefix))
            fn_owned = xstrdup("");
        free(prefix);
        free(fkey);
        free(dkey);
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
    /* -U adds force-share=on to the options; a conflicting explicit value
     * is refused, and shared access is for read-only opens only. */
    const char *fs = kvopts_get(&opts, "force-share");
    if ((a->flags & BLK_O_SHARE) && fs && strcmp(fs, "on")) {
        error_report("--force-share/-U conflicts with image options");
        goto fail;
    }
    if ((a->flags & BLK_O_RDWR) && ((a->flags & BLK_O_SHARE) || (fs && !strcmp(fs, "on")))) {
        error_report("Could not open '%s': force-share=on can only be used with read-only images",
                     a->filename);
        goto fail;
    }
    /* force-share stays: the block layer checks its value as qemu's
     * bdrv_open_common does ("Parameter 'force-share' expects ...") */
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
fail:
    kvopts_release(&opts);
    free(fn_owned);
    free(fmt_owned);
    return NULL;
}

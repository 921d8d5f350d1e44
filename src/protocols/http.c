/* The "http" and "https" protocols: a read-only image behind a web server,
 * over libcurl.
 *
 * Implements what qemu's block/curl.c offers for http(s): the size from a
 * HEAD request (Content-Length), byte-range GETs (RFC 9110 section 14,
 * "Range Requests": the server must answer "Accept-Ranges: bytes" and 206
 * Partial Content), the options url, readahead, timeout, sslverify, cookie,
 * cookie-secret, username, password-secret, proxy-username and
 * proxy-password-secret (secrets given with --object secret, read as
 * UTF-8 text like qemu's qcrypto_secret_lookup_as_utf8), and qemu's
 * messages. Reads go through a small cache of
 * read-ahead windows so that a format's many small metadata reads (qcow2
 * header, L1/L2 tables, refcounts) cost one request per window, not one
 * each. The node is serialized (one curl handle, one connection kept
 * alive); images are read-only, so the cache is never invalidated. */
/* The table of libcurl functions (util/dynlib.h) needs the plain
 * declarations, not the type-checking macros. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "block/driver.h"
#include "util/dynlib.h"
#include "util/qjson.h"
#include "util/secret.h"
#include "util/strbuf.h"
#include "util/xalloc.h"

/* libcurl.so.4 is loaded on first use (util/dynlib.h). */
#define LIBCURL_FUNCS(X) \
    X(curl_easy_cleanup) \
    X(curl_easy_getinfo) \
    X(curl_easy_init) \
    X(curl_easy_perform) \
    X(curl_easy_reset) \
    X(curl_easy_setopt) \
    X(curl_global_init)
static struct { LIBCURL_FUNCS(DYNLIB_FIELD) } lcurl;
#define LIBCURL_RESOLVE(f) DYNLIB_RESOLVE_INTO(lcurl, f)
static int libcurl_resolve(void *h, struct err *err)
{
    void *sym;
    LIBCURL_FUNCS(LIBCURL_RESOLVE)
    return 0;
}
/* The GnuTLS flavour first: it is the one Debian's qemu-img links its curl
 * module with, so TLS failures read exactly as qemu's do ("server
 * certificate verification failed. ..."); the OpenSSL flavour otherwise.
 * Both export the same libcurl ABI. */
static struct dynlib libcurl_gnutls_lib = DYNLIB_INIT("libcurl-gnutls.so.4", libcurl_resolve);
static struct dynlib libcurl_lib = DYNLIB_INIT("libcurl.so.4", libcurl_resolve);

static int libcurl_load(struct err *err)
{
    if (dynlib_load(&libcurl_gnutls_lib, NULL) == 0)
        return 0;
    return dynlib_load(&libcurl_lib, err);
}

#define HTTP_READAHEAD_DEFAULT (256 * 1024)
#define HTTP_TIMEOUT_DEFAULT 5
#define HTTP_TIMEOUT_MAX 10000
#define HTTP_CACHE_SLOTS 8
#define HTTP_MAX_REQUEST (64u << 20)      /* one GET never asks for more */

struct http_window {
    uint64_t off;
    size_t len;                 /* 0: empty slot */
    uint8_t *data;
};

struct http_state {
    CURL *curl;
    char *url;
    char *cookie;
    char *username;
    char *password;
    char *proxy_username;
    char *proxy_password;
    uint64_t size;
    uint64_t readahead;
    long timeout;
    bool sslverify;
    bool accept_range;
    char errbuf[CURL_ERROR_SIZE];
    struct http_window cache[HTTP_CACHE_SLOTS];
    unsigned victim;            /* next slot to replace */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_global_setup(void)
{
    curl_init_rc = lcurl.curl_global_init(CURL_GLOBAL_ALL);
}

static bool http_claims(const char *filename)
{
    return !strncasecmp(filename, "http://", 7);
}

static bool https_claims(const char *filename)
{
    return !strncasecmp(filename, "https://", 8);
}

/* "Accept-Ranges: bytes" (any case, surrounding blanks) sets accept_range. */
static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    struct http_state *s = opaque;
    size_t n = size * nmemb;
    static const char name[] = "accept-ranges:";
    const char *p = ptr, *end = ptr + n;

    if (n >= sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
        p += sizeof(name) - 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 5 && !strncmp(p, "bytes", 5)) {
            p += 5;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
                p++;
            if (p == end)
                s->accept_range = true;
        }
    }
    return n;
}

struct sink {
    uint8_t *buf;
    size_t want, got;
    bool overflow;
};

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    struct sink *k = opaque;
    size_t n = size * nmemb;

    if (n > k->want - k->got) {
        /* a server that ignored the range: stop the transfer */
        k->overflow = true;
        return 0;
    }
    memcpy(k->buf + k->got, ptr, n);
    k->got += n;
    return n;
}

static size_t discard_cb(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    (void)ptr;
    (void)opaque;
    return size * nmemb;
}

/* Options every request shares. */
static int setup_handle(struct http_state *s)
{
    CURL *c = s->curl;

    lcurl.curl_easy_reset(c);
    if (lcurl.curl_easy_setopt(c, CURLOPT_URL, s->url) ||
        lcurl.curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, (long)s->sslverify) ||
        lcurl.curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, s->sslverify ? 2L : 0L) ||
        lcurl.curl_easy_setopt(c, CURLOPT_TIMEOUT, s->timeout) ||
        lcurl.curl_easy_setopt(c, CURLOPT_AUTOREFERER, 1L) ||
        lcurl.curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L) ||
        lcurl.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
        lcurl.curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->errbuf) ||
        lcurl.curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L) ||
        lcurl.curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") ||
        lcurl.curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"))
        return -EIO;
    if (s->cookie && lcurl.curl_easy_setopt(c, CURLOPT_COOKIE, s->cookie))
        return -EIO;
    if (s->username && lcurl.curl_easy_setopt(c, CURLOPT_USERNAME, s->username))
        return -EIO;
    if (s->password && lcurl.curl_easy_setopt(c, CURLOPT_PASSWORD, s->password))
        return -EIO;
    if (s->proxy_username && lcurl.curl_easy_setopt(c, CURLOPT_PROXYUSERNAME, s->proxy_username))
        return -EIO;
    if (s->proxy_password && lcurl.curl_easy_setopt(c, CURLOPT_PROXYPASSWORD, s->proxy_password))
        return -EIO;
    s->errbuf[0] = '\0';
    return 0;
}

/* qemu's curl prints libcurl's own words for a failed transfer before the
 * command reports the failed read (its first 100, then says it stops). */
static void report_transfer_error(const char *msg)
{
    static int left = 100;
    int n = __atomic_fetch_sub(&left, 1, __ATOMIC_RELAXED);

    if (n <= 0)
        return;
    blk_message("%s: curl: %s", blk_prog_name(), msg);
    if (n == 1)
        blk_message("%s: curl: further errors suppressed", blk_prog_name());
}

/* GET [off, off+len) into buf. */
static int http_get_range(struct http_state *s, uint64_t off, size_t len, uint8_t *buf)
{
    char range[64];
    struct sink k = { .buf = buf, .want = len };
    long code = 0;

    if (setup_handle(s) < 0)
        return -EIO;
    snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
             (unsigned long long)(off + len - 1));
    if (lcurl.curl_easy_setopt(s->curl, CURLOPT_RANGE, range) ||
        lcurl.curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, body_cb) ||
        lcurl.curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, &k))
        return -EIO;
    if (lcurl.curl_easy_perform(s->curl) != CURLE_OK) {
        report_transfer_error(s->errbuf);
        return -EIO;
    }
    lcurl.curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
    /* 206 is a range answer; 200 is acceptable only if it is exactly it */
    if (k.overflow || k.got != len || (code != 206 && !(code == 200 && off == 0)))
        return -EIO;
    return 0;
}

static void cache_clear(struct http_state *s)
{
    for (int i = 0; i < HTTP_CACHE_SLOTS; i++) {
        free(s->cache[i].data);
        s->cache[i].data = NULL;
        s->cache[i].len = 0;
    }
}

static void http_state_release(struct http_state *s)
{
    cache_clear(s);
    if (s->curl)
        lcurl.curl_easy_cleanup(s->curl);
    s->curl = NULL;
    free(s->url);
    free(s->cookie);
    free(s->username);
    free(s->password);
    free(s->proxy_username);
    free(s->proxy_password);
    s->url = s->cookie = s->username = NULL;
    s->password = s->proxy_username = s->proxy_password = NULL;
}

/* Strict UTF-8 (as GLib's g_utf8_validate over a length: no NUL, no
 * overlong forms, no surrogates, nothing past U+10FFFF). */
static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        uint32_t cp, min;
        size_t k;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* A copy of the secret's text, or NULL with qemu's message. */
static char *secret_utf8(const char *id, struct err *err)
{
    size_t len = 0;
    const char *data = secret_get(id, &len, err);

    if (!data)
        return NULL;
    if (!utf8_valid((const uint8_t *)data, len)) {
        err_set(err, EINVAL, "Data from secret %s is not valid UTF-8", id);
        return NULL;
    }
    return xstrndup(data, len);
}

static char *node_name(const char *driver, const char *url, const struct kvopts *opts)
{
    static const char *const strong[] = { "sslverify", "cookie", "cookie-secret", "username",
                                          "password-secret", "proxy-username",
                                          "proxy-password-secret" };
    json_t *o = json_object();
    struct strbuf sb;
    bool plain = true;

    json_object_set_new(o, "driver", json_string(driver));
    json_object_set_new(o, "url", json_string(url));
    for (size_t i = 0; opts && i < sizeof(strong) / sizeof(strong[0]); i++) {
        const char *v = kvopts_get(opts, strong[i]);
        if (!v)
            continue;
        bool b;
        /* the default sslverify changes nothing */
        if (!strcmp(strong[i], "sslverify") && kvopts_parse_bool("sslverify", v, &b, NULL) == 0 && b)
            continue;
        /* the value as given (a json: boolean stays a boolean) */
        const struct kvopt *kv = NULL;
        for (size_t k = opts->n; k > 0 && !kv; k--)
            if (!strcmp(opts->v[k - 1].key, strong[i]))
                kv = &opts->v[k - 1];
        json_object_set_new(o, strong[i], qjson_opt_value(kv));
        plain = false;
    }
    if (plain) {
        json_decref(o);
        return xstrdup(url);
    }
    strbuf_init(&sb);
    strbuf_puts(&sb, "json:");
    qjson_compact(&sb, o);
    json_decref(o);
    return strbuf_detach(&sb);
}

static int http_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct http_state *s = bs->opaque;
    const char *proto = bs->drv->name;
    const char *url = bs->filename && bs->filename[0] ? bs->filename : NULL;
    curl_off_t cl = -1;
    uint64_t v;
    int r;

    if (flags & BLK_O_RDWR)
        return err_set(err, EACCES, "curl driver does not support writes");
    if ((r = libcurl_load(err)) < 0)
        return r;
    pthread_once(&curl_once, curl_global_setup);
    if (curl_init_rc != CURLE_OK)
        return err_set(err, EIO, "libcurl initialization failed with %d", (int)curl_init_rc);

    if (opts && (r = kvopts_get_size(opts, "readahead", HTTP_READAHEAD_DEFAULT, &s->readahead, err)) < 0)
        return r;
    if (!opts)
        s->readahead = HTTP_READAHEAD_DEFAULT;
    if (s->readahead & 0x1ff)
        return err_set(err, EINVAL, "HTTP_READAHEAD_SIZE %llu is not a multiple of 512",
                       (unsigned long long)s->readahead);
    if (s->readahead > HTTP_MAX_REQUEST)
        s->readahead = HTTP_MAX_REQUEST;
    v = HTTP_TIMEOUT_DEFAULT;
    if (opts && (r = kvopts_get_number(opts, "timeout", HTTP_TIMEOUT_DEFAULT, &v, err)) < 0)
        return r;
    if (v > HTTP_TIMEOUT_MAX)
        return err_set(err, EINVAL, "timeout parameter is too large or negative");
    s->timeout = (long)v;
    s->sslverify = true;
    if (opts && (r = kvopts_get_bool(opts, "sslverify", true, &s->sslverify, err)) < 0)
        return r;
    if (opts && kvopts_get(opts, "cookie") && kvopts_get(opts, "cookie-secret"))
        return err_set(err, EINVAL, "curl driver cannot handle both cookie and cookie secret");
    /* qemu looks the cookie secret up before it checks the URL, the
     * password secrets after */
    if (opts && kvopts_get(opts, "cookie-secret")) {
        if (!(s->cookie = secret_utf8(kvopts_get(opts, "cookie-secret"), err)))
            return -EINVAL;
    } else if (opts && kvopts_get(opts, "cookie")) {
        s->cookie = xstrdup(kvopts_get(opts, "cookie"));
    }
    if (opts && kvopts_get(opts, "url"))
        url = kvopts_get(opts, "url");
    if (!url) {
        r = err_set(err, EINVAL, "curl block driver requires an 'url' option");
        goto fail;
    }
    size_t plen = strlen(proto);
    if (strncasecmp(url, proto, plen) || strncmp(url + plen, "://", 3)) {
        r = err_set(err, EINVAL,
                    "%s curl driver cannot handle the URL '%s' (does not start with '%s://')",
                    proto, url, proto);
        goto fail;
    }

    s->url = xstrdup(url);
    if (opts && kvopts_get(opts, "username"))
        s->username = xstrdup(kvopts_get(opts, "username"));
    if (opts && kvopts_get(opts, "password-secret") &&
        !(s->password = secret_utf8(kvopts_get(opts, "password-secret"), err))) {
        r = -EINVAL;
        goto fail;
    }
    if (opts && kvopts_get(opts, "proxy-username"))
        s->proxy_username = xstrdup(kvopts_get(opts, "proxy-username"));
    if (opts && kvopts_get(opts, "proxy-password-secret") &&
        !(s->proxy_password = secret_utf8(kvopts_get(opts, "proxy-password-secret"), err))) {
        r = -EINVAL;
        goto fail;
    }
    s->curl = lcurl.curl_easy_init();
    if (!s->curl) {
        r = err_set(err, EIO, "CURL: Error opening file: curl library initialization failed.");
        goto fail;
    }

    /* The size, and whether ranges are served: one HEAD request. */
    if (setup_handle(s) < 0 ||
        lcurl.curl_easy_setopt(s->curl, CURLOPT_NOBODY, 1L) ||
        lcurl.curl_easy_setopt(s->curl, CURLOPT_HEADERFUNCTION, header_cb) ||
        lcurl.curl_easy_setopt(s->curl, CURLOPT_HEADERDATA, s) ||
        lcurl.curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, discard_cb)) {
        r = err_set(err, EIO, "CURL: Error opening file: curl library initialization failed.");
        goto fail;
    }
    s->accept_range = false;
    if (lcurl.curl_easy_perform(s->curl) != CURLE_OK) {
        r = err_set(err, EIO, "CURL: Error opening file: %s", s->errbuf);
        goto fail;
    }
    if (lcurl.curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK || cl < 0) {
        r = err_set(err, EIO, "CURL: Error opening file: Server didn't report file size.");
        goto fail;
    }
    if (!s->accept_range) {
        r = err_set(err, EIO, "CURL: Error opening file: Server does not support 'range' (byte ranges).");
        goto fail;
    }
    s->size = (uint64_t)cl;
    bs->total_size = s->size;
    bs->read_only = true;
    /* qemu names the node by its URL unless options change what it reads;
     * then by a json: name of the options that do */
    free(bs->filename);
    bs->filename = node_name(bs->drv->name, s->url, opts);
    return 0;
fail:
    http_state_release(s);
    return r;
}

static void http_close(struct bds *bs)
{
    http_state_release(bs->opaque);
}

static const struct http_window *cache_find(const struct http_state *s, uint64_t off, uint64_t len)
{
    for (int i = 0; i < HTTP_CACHE_SLOTS; i++) {
        const struct http_window *w = &s->cache[i];
        if (w->len && off >= w->off && off + len <= w->off + w->len)
            return w;
    }
    return NULL;
}

static int http_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct http_state *s = bs->opaque;
    uint8_t *p = buf;
    const struct http_window *hit;

    /* The core rounds the length to sectors: the tail reads as zeros. */
    if (off >= s->size) {
        memset(p, 0, (size_t)len);
        return 0;
    }
    if (off + len > s->size) {
        memset(p + (s->size - off), 0, (size_t)(off + len - s->size));
        len = s->size - off;
    }
    if ((hit = cache_find(s, off, len))) {
        memcpy(p, hit->data + (off - hit->off), (size_t)len);
        return 0;
    }
    if (len >= s->readahead) {
        /* Bulk reads (convert) go straight to the caller's buffer. */
        while (len) {
            size_t n = (size_t)min_u64(len, HTTP_MAX_REQUEST);
            int r = http_get_range(s, off, n, p);
            if (r)
                return r;
            p += n;
            off += n;
            len -= n;
        }
        return 0;
    }
    /* A small read: fetch it plus the read-ahead window into a slot. */
    struct http_window *w = &s->cache[s->victim];
    size_t n = (size_t)min_u64(len + s->readahead, s->size - off);
    uint8_t *data = malloc(n);
    int r;

    if (!data)
        return -ENOMEM;
    r = http_get_range(s, off, n, data);
    if (r) {
        free(data);
        return r;
    }
    free(w->data);
    w->data = data;
    w->off = off;
    w->len = n;
    s->victim = (s->victim + 1) % HTTP_CACHE_SLOTS;
    memcpy(p, data, (size_t)len);
    return 0;
}

/* qemu's generic answer for protocols without block status: all data, at
 * the same offset in this node. */
static int http_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, struct bds **file)
{
    *pnum = len;
    *map = off;
    *file = bs;
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
}

static int http_get_info(struct bds *bs, struct blk_info *bi)
{
    (void)bs;
    (void)bi;
    return -ENOTSUP;    /* qemu's curl has none: no dirty flag in info */
}

static bool http_has_zero_init(struct bds *bs)
{
    (void)bs;
    return false;
}

const struct blk_driver http_driver = {
    .name = "http",
    .kind = BLK_KIND_PROTOCOL,
    .instance_size = sizeof(struct http_state),
    .thread_model = BLK_THREAD_SERIALIZE,
    .claims = http_claims,
    .open = http_open,
    .close = http_close,
    .pread = http_pread,
    .block_status = http_block_status,
    .get_info = http_get_info,
    .has_zero_init = http_has_zero_init,
};

const struct blk_driver https_driver = {
    .name = "https",
    .kind = BLK_KIND_PROTOCOL,
    .instance_size = sizeof(struct http_state),
    .thread_model = BLK_THREAD_SERIALIZE,
    .claims = https_claims,
    .open = http_open,
    .close = http_close,
    .pread = http_pread,
    .block_status = http_block_status,
    .get_info = http_get_info,
    .has_zero_init = http_has_zero_init,
};

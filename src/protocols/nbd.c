/* The "nbd" protocol: a network block device export, over libnbd.
 *
 * Implements the client side of the NBD protocol (NetworkBlockDevice's
 * doc/proto.md: fixed newstyle negotiation, NBD_CMD_READ/WRITE/
 * WRITE_ZEROES/TRIM/FLUSH and NBD_CMD_BLOCK_STATUS with the
 * "base:allocation" metadata context) as qemu's block/nbd.c presents it:
 * the same filename syntaxes (nbd://host[:port]/export, nbd+tcp://,
 * nbd+unix:///export?socket=PATH, the legacy nbd:host:port[:exportname=X]
 * and nbd:unix:PATH[:exportname=X]) and the same option names
 * (server.type/host/port/path, export, and the legacy host/port/path), the
 * same canonical filename and qemu's messages.
 *
 * We open the socket ourselves so that connection errors read like qemu's
 * ("Failed to connect to 'h:p': Connection refused"); libnbd then runs the
 * handshake over it. The driver is thread-parallel: the copy engine's
 * threads share a connection through libnbd's asynchronous calls, with as
 * many requests in flight as pays for the server at hand (see "requests in
 * flight"); when the server advertises multi-conn further connections (up
 * to NBD_MAX_CONNS, see there why it is 1 today) are opened lazily once
 * every connection has a queue. Read-only exports answer block status from
 * the extents of one whole-export reply. */
#include <errno.h>
#include <stdio.h>
#include <libnbd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "block/driver.h"
#include "util/dynlib.h"
#include "util/xalloc.h"

/* libnbd.so.0 is loaded on first use (util/dynlib.h). */
#define LIBNBD_FUNCS(X) \
    X(nbd_add_meta_context) \
    X(nbd_aio_block_status) \
    X(nbd_aio_connect_socket) \
    X(nbd_aio_flush) \
    X(nbd_aio_get_direction) \
    X(nbd_aio_get_fd) \
    X(nbd_aio_is_closed) \
    X(nbd_aio_is_connecting) \
    X(nbd_aio_is_dead) \
    X(nbd_aio_is_ready) \
    X(nbd_aio_notify_read) \
    X(nbd_aio_notify_write) \
    X(nbd_aio_pread) \
    X(nbd_aio_pwrite) \
    X(nbd_aio_trim) \
    X(nbd_aio_zero) \
    X(nbd_can_fast_zero) \
    X(nbd_can_flush) \
    X(nbd_can_meta_context) \
    X(nbd_can_multi_conn) \
    X(nbd_can_trim) \
    X(nbd_can_zero) \
    X(nbd_close) \
    X(nbd_connect_socket) \
    X(nbd_create) \
    X(nbd_get_block_size) \
    X(nbd_get_errno) \
    X(nbd_get_error) \
    X(nbd_get_size) \
    X(nbd_is_read_only) \
    X(nbd_poll) \
    X(nbd_set_export_name) \
    X(nbd_set_pread_initialize) \
    X(nbd_shutdown)
static struct { LIBNBD_FUNCS(DYNLIB_FIELD) } lnbd;
#define LIBNBD_RESOLVE(f) DYNLIB_RESOLVE_INTO(lnbd, f)
static int libnbd_resolve(void *h, struct err *err)
{
    void *sym;
    LIBNBD_FUNCS(LIBNBD_RESOLVE)
    return 0;
}
static struct dynlib libnbd_lib = DYNLIB_INIT("libnbd.so.0", libnbd_resolve);

#define NBD_DEFAULT_PORT "10809"
/* Connections per node when the server advertises multi-conn. Measured
 * (bench/bench.py nbd, 1 GiB, qemu-nbd -e 8 and nbdkit file/memory over
 * Unix sockets on 2 cores): one connection with one request in flight beat
 * four on every workload (qemu-nbd qcow2 export to raw: 1.12 s against
 * 2.87 s, qemu-img 2.65 s; -m 8 -W into nbdkit memory: 0.71 s against
 * 1.10 s), the server and the copy threads competing for the same CPUs;
 * measured again with pipelined requests (nbdkit file to raw: 1.78 s with
 * one connection, 1.92 s with two, 2.24 s with four). The pool stays for
 * servers far away, where more connections hide the latency: raise this to
 * use it. */
#define NBD_MAX_CONNS 1
#define NBD_MAX_REQUEST (32u << 20)      /* qemu's NBD_MAX_BUFFER_SIZE */
/* Data per READ or WRITE command. Servers take a buffer per command:
 * qemu-nbd allocates 2 MiB and larger ones afresh (glibc maps them), and
 * on this kind of VM each first touch of a page is a 15-30 us fault: a
 * 1 GiB copy from a qemu-nbd qcow2 export in 2 MiB reads cost the server
 * 40,000-120,000 page faults and up to 2.4 s of CPU, against none in
 * 512 KiB reads (nbdkit: 8,200 faults per 256 MiB at 2 MiB, 2,100 at
 * 512 KiB). The copy engine's 2 MiB steps go out as four commands. */
#define NBD_DATA_REQUEST (512u << 10)
#define NBD_MAX_ZERO (1u << 30)          /* one WRITE_ZEROES/TRIM request */
#define NBD_EXTRA_CONNECT_MS 2000        /* give up on an extra connection after */
#define NBD_CONN_DEPTH 4                 /* commands in flight before another connection */
#define NBD_PIPE_DEPTH 8                 /* commands in flight when the server gains from it */
#define NBD_PROBE_BYTES (16u << 20)      /* data in one timed window */
#define NBD_PROBE_ROUNDS 3               /* windows timed at each depth */
#define NBD_CACHE_MAX 65536              /* extents kept from one block status reply */
#define NBD_UNIX_SNDBUF (4 << 20)       /* SO_SNDBUF asked for a Unix socket */
#define EN_OPTSTR ":exportname="

struct nbd_req;

/* One connection and the commands in flight on it (see "requests in
 * flight" below). */
struct nbd_conn {
    struct nbd_handle *h;
    pthread_mutex_t mu;         /* every libnbd call on h is made under it */
    int efd;                    /* eventfd: wakes the poller */
    bool polling;               /* a caller is in poll() for this connection */
    short poll_events;          /* what it waits for */
    int dead;                   /* errno once the connection is lost */
    unsigned inflight;          /* commands sent or being sent (atomic) */
    struct nbd_req *waiters;    /* callers waiting while another polls */
    /* how many commands may be in flight: see conn_gate() */
    pthread_cond_t gate;
    unsigned active, depth;
    int phase;                  /* 0: warm-up, then odd: depth 1, even: NBD_PIPE_DEPTH */
    uint64_t win_bytes;
    struct timespec win_start;
    double t_one, t_deep;       /* fastest window at each depth */
    pid_t peer;                 /* the server's pid when it is local, else 0 */
    double win_cpu;             /* its CPU time when the window began, or -1 */
    double cpu_one, cpu_deep;   /* its cheapest window at each depth */
};

/* Where the server is: what the filename or the options said. */
struct nbd_addr {
    bool is_unix;
    char *host, *port, *path;
    char *export;               /* NULL: the default export "" */
};

struct nbd_state {
    struct nbd_addr addr;
    struct nbd_conn conn[NBD_MAX_CONNS];
    int nconn;                  /* connections opened (read atomically) */
    pthread_mutex_t pool_mu;    /* held while adding a connection */
    bool pool_full;             /* no further connection will be tried */
    unsigned next;              /* round robin when all are busy */
    uint64_t size;
    uint32_t min_block, max_req;
    bool can_multi_conn, can_zero, can_fast_zero, can_trim, can_flush, has_alloc;
    /* read-only exports: the extents of the last block status reply */
    bool cache_on;
    pthread_mutex_t cache_mu;
    struct nbd_extent *cache_ext;
    size_t cache_n;
    uint64_t cache_off;
};

static void addr_release(struct nbd_addr *a)
{
    free(a->host);
    free(a->port);
    free(a->path);
    free(a->export);
    memset(a, 0, sizeof(*a));
}

/* --- filenames --- */

static bool nbdc_claims(const char *filename)
{
    return !strncmp(filename, "nbd:", 4) || !strncmp(filename, "nbd://", 6) ||
           !strncmp(filename, "nbd+tcp://", 10) || !strncmp(filename, "nbd+unix://", 11);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* URI percent-decoding of s[0..n). */
static char *pct_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *o++ = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* nbd[+tcp]://host[:port][/export] and nbd+unix:///[export]?socket=path */
static int parse_uri(const char *fn, struct nbd_addr *a)
{
    const char *rest, *auth, *auth_end, *path, *path_end, *query;
    bool is_unix;

    if (!strncmp(fn, "nbd://", 6)) {
        rest = fn + 6;
        is_unix = false;
    } else if (!strncmp(fn, "nbd+tcp://", 10)) {
        rest = fn + 10;
        is_unix = false;
    } else if (!strncmp(fn, "nbd+unix://", 11)) {
        rest = fn + 11;
        is_unix = true;
    } else {
        return -EINVAL;
    }
    auth = rest;
    auth_end = auth + strcspn(auth, "/?#");
    path = auth_end;
    path_end = path + strcspn(path, "?#");
    query = *path_end == '?' ? path_end + 1 : NULL;
    if (strchr(path_end, '#'))
        return -EINVAL;

    a->is_unix = is_unix;
    if (*path == '/')
        path++;
    if (path < path_end)
        a->export = pct_decode(path, (size_t)(path_end - path));

    if (is_unix) {
        /* exactly one query parameter, "socket"; no host or port */
        if (auth != auth_end || !query || strncmp(query, "socket=", 7) || strchr(query, '&'))
            return -EINVAL;
        a->path = pct_decode(query + 7, strlen(query + 7));
        return 0;
    }
    if (query && *query)
        return -EINVAL;
    if (auth == auth_end)
        return -EINVAL;
    const char *host_end, *colon = NULL;
    if (*auth == '[') {
        host_end = memchr(auth, ']', (size_t)(auth_end - auth));
        if (!host_end)
            return -EINVAL;
        a->host = xstrndup(auth + 1, (size_t)(host_end - auth - 1));
        host_end++;
        if (host_end < auth_end && *host_end == ':')
            colon = host_end;
        else if (host_end != auth_end)
            return -EINVAL;
    } else {
        colon = memchr(auth, ':', (size_t)(auth_end - auth));
        host_end = colon ? colon : auth_end;
        a->host = pct_decode(auth, (size_t)(host_end - auth));
    }
    if (colon && colon + 1 < auth_end) {
        long port = 0;
        for (const char *p = colon + 1; p < auth_end; p++) {
            if (*p < '0' || *p > '9' || port > 65535)
                return -EINVAL;
            port = port * 10 + (*p - '0');
        }
        a->port = port ? xasprintf("%ld", port) : xstrdup(NBD_DEFAULT_PORT);
    } else {
        a->port = xstrdup(NBD_DEFAULT_PORT);
    }
    return 0;
}

/* qemu's legacy syntax: nbd:host:port[:exportname=X], nbd:unix:path[:exportname=X] */
static int parse_legacy(const char *fn, struct nbd_addr *a, struct err *err)
{
    char *file = xstrdup(fn);
    char *en = strstr(file, EN_OPTSTR);
    const char *spec;
    int r = 0;

    if (en) {
        if (!en[strlen(EN_OPTSTR)])
            goto out;               /* qemu then reports the missing address */
        *en = '\0';
        a->export = xstrdup(en + strlen(EN_OPTSTR));
    }
    if (strncmp(file, "nbd:", 4)) {
        r = err_set(err, EINVAL, "File name string for NBD must start with 'nbd:'");
        goto out;
    }
    spec = file + 4;
    if (!*spec)
        goto out;
    if (!strncmp(spec, "unix:", 5)) {
        a->is_unix = true;
        a->path = xstrdup(spec + 5);
        goto out;
    }
    const char *colon;
    if (*spec == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            r = err_set(err, EINVAL, "error parsing IPv6 address '%s'", spec);
            goto out;
        }
        a->host = xstrndup(spec + 1, (size_t)(close - spec - 1));
        colon = close + 1;
    } else {
        colon = strchr(spec, ':');
        if (!colon) {
            r = err_set(err, EINVAL, "error parsing address '%s'", spec);
            goto out;
        }
        a->host = xstrndup(spec, (size_t)(colon - spec));
    }
    a->port = xstrdup(colon + 1);
    if (!a->port[0]) {
        r = err_set(err, EINVAL, "error parsing address '%s'", spec);
        goto out;
    }
out:
    free(file);
    return r;
}

/* Address from --image-opts / json: keys: server.type/host/port/path and
 * export, or the legacy host/port/path. */
static int addr_from_opts(struct kvopts *opts, struct nbd_addr *a, struct err *err)
{
    const char *type = kvopts_get(opts, "server.type");
    const char *path = kvopts_get(opts, "path"), *host = kvopts_get(opts, "host");
    const char *port = kvopts_get(opts, "port");
    bool has_server = false;

    for (size_t i = 0; i < opts->n; i++)
        if (!strncmp(opts->v[i].key, "server.", 7))
            has_server = true;
    if (path || host || port) {
        if (has_server)
            return err_set(err, EINVAL, "Cannot use 'server' and path/host/port at the same time");
        if (path && host)
            return err_set(err, EINVAL, "path and host may not be used at the same time");
        if (path && port)
            return err_set(err, EINVAL, "port may not be used without host");
        if (path) {
            a->is_unix = true;
            a->path = xstrdup(path);
        } else if (host) {
            a->host = xstrdup(host);
            a->port = xstrdup(port ? port : NBD_DEFAULT_PORT);
        }
    } else if (has_server) {
        if (!type)
            return err_set(err, EINVAL, "Parameter 'type' is missing");
        if (!strcmp(type, "unix")) {
            const char *p = kvopts_get(opts, "server.path");
            if (!p)
                return err_set(err, EINVAL, "Parameter 'path' is missing");
            a->is_unix = true;
            a->path = xstrdup(p);
        } else if (!strcmp(type, "inet")) {
            const char *h = kvopts_get(opts, "server.host");
            const char *p = kvopts_get(opts, "server.port");
            if (!h)
                return err_set(err, EINVAL, "Parameter 'host' is missing");
            if (!p)
                return err_set(err, EINVAL, "Parameter 'port' is missing");
            a->host = xstrdup(h);
            a->port = xstrdup(p);
        } else {
            return err_set(err, EINVAL, "Parameter 'type' does not accept value '%s'", type);
        }
    }
    if (kvopts_get(opts, "export"))
        a->export = xstrdup(kvopts_get(opts, "export"));
    if (!a->path && !a->host)
        return err_set(err, EINVAL, "NBD server address missing");
    return 0;
}

static bool opts_conflict(struct kvopts *opts, struct err *err)
{
    static const char *const keys[] = { "host", "port", "path", "export" };
    for (size_t i = 0; opts && i < opts->n; i++) {
        const char *k = opts->v[i].key;
        bool bad = !strncmp(k, "server.", 7);
        for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++)
            bad = bad || !strcmp(k, keys[j]);
        if (bad) {
            err_set(err, EINVAL, "Option '%s' cannot be used with a file name", k);
            return true;
        }
    }
    return false;
}

static int addr_parse(const char *fn, struct kvopts *opts, struct nbd_addr *a, struct err *err)
{
    int r;

    if (!fn || !*fn)
        return addr_from_opts(opts, a, err);
    if (opts_conflict(opts, err))
        return -EINVAL;
    if (strstr(fn, "://")) {
        if (parse_uri(fn, a) < 0)
            return err_set(err, EINVAL, "No valid URL specified");
    } else if ((r = parse_legacy(fn, a, err)) < 0) {
        return r;
    }
    if (!a->path && !a->host)
        return err_set(err, EINVAL, "NBD server address missing");
    return 0;
}

/* qemu's canonical name of the node (its nbd_refresh_filename). */
static char *addr_filename(const struct nbd_addr *a)
{
    if (a->is_unix)
        return a->export ? xasprintf("nbd+unix:///%s?socket=%s", a->export, a->path)
                         : xasprintf("nbd+unix://?socket=%s", a->path);
    return a->export ? xasprintf("nbd://%s:%s/%s", a->host, a->port, a->export)
                     : xasprintf("nbd://%s:%s", a->host, a->port);
}

/* --- connections --- */

/* A connected socket to the server, or -errno with qemu's message. */
static int open_socket(const struct nbd_addr *a, struct err *err)
{
    int fd, e;

    if (a->is_unix) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        if (strlen(a->path) >= sizeof(sun.sun_path))
            return err_set(err, EINVAL, "UNIX socket path '%s' is too long", a->path);
        strcpy(sun.sun_path, a->path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return err_set_errno(err, errno, "Failed to create socket");
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            e = errno;
            close(fd);
            return err_set_errno(err, e, "Failed to connect to '%s'", a->path);
        }
        /* A Unix socket's send buffer (212992 bytes by default) bounds how
         * much of a write request the kernel takes at once: a 2 MiB request
         * went out in ten pieces, each a wake-up of the poller here and of
         * the server's reader there. Ask for room for a few whole requests
         * (the kernel caps it at net.core.wmem_max; failure is harmless). */
        int sb = NBD_UNIX_SNDBUF;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
        return fd;
    }

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_ADDRCONFIG };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(a->host, a->port, &hints, &res);
    if (g != 0)
        return err_set(err, EINVAL, "address resolution failed for %s:%s: %s", a->host, a->port,
                       gai_strerror(g));
    e = ECONNREFUSED;
    fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            /* small requests (block status, metadata) must not wait for
             * Nagle's algorithm and delayed ACKs */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            break;
        }
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return err_set_errno(err, e, "Failed to connect to '%s:%s'", a->host, a->port);
    return fd;
}

/* libnbd's handshake error in qemu's words where qemu has them. */
static int handshake_error(const struct nbd_addr *a, struct err *err)
{
    const char *msg = lnbd.nbd_get_error();
    int e = lnbd.nbd_get_errno();

    if (!e)
        e = EIO;
    if (msg && (strstr(msg, "no export") || strstr(msg, "not present") ||
                strstr(msg, "unknown export")))
        return err_set(err, e, "Requested export not available\nserver reported: export '%s' not present",
                       a->export ? a->export : "");
    const char *colon = msg ? strstr(msg, ": ") : NULL;
    return err_set(err, e, "%s", colon ? colon + 2 : msg ? msg : "NBD handshake failed");
}

/* A handle connected and negotiated with the export, or NULL. timeout_ms < 0
 * waits as long as the server takes. */
static struct nbd_handle *connect_handle(const struct nbd_addr *a, int timeout_ms, struct err *err)
{
    struct nbd_handle *h;
    int fd = open_socket(a, err);

    if (fd < 0)
        return NULL;
    h = lnbd.nbd_create();
    if (!h) {
        close(fd);
        err_set(err, ENOMEM, "%s", lnbd.nbd_get_error());
        return NULL;
    }
    /* libnbd clears every read buffer before the read by default: a memset
     * of each byte copied (10% of a copy's CPU). A failed read's buffer is
     * never used here. */
    lnbd.nbd_set_pread_initialize(h, false);
    if (lnbd.nbd_set_export_name(h, a->export ? a->export : "") < 0 ||
        lnbd.nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) {
        close(fd);
        goto fail;
    }
    if (timeout_ms < 0) {
        if (lnbd.nbd_connect_socket(h, fd) < 0)      /* the handle owns fd from here */
            goto fail;
        return h;
    }
    /* Bounded wait: a server that allows fewer clients than it advertised
     * parallelism for would otherwise leave us waiting in its backlog. */
    if (lnbd.nbd_aio_connect_socket(h, fd) < 0)
        goto fail;
    while (lnbd.nbd_aio_is_connecting(h)) {
        int r = lnbd.nbd_poll(h, timeout_ms);
        if (r < 0)
            goto fail;
        if (r == 0) {
            err_set(err, ETIMEDOUT, "NBD handshake timed out");
            lnbd.nbd_close(h);
            return NULL;
        }
    }
    if (!lnbd.nbd_aio_is_ready(h)) {
        err_set(err, EIO, "NBD handshake failed");
        lnbd.nbd_close(h);
        return NULL;
    }
    return h;
fail:
    handshake_error(a, err);
    lnbd.nbd_close(h);
    return NULL;
}

/* The errno of the last failed libnbd call of this thread. A lost
 * connection (libnbd: ENOTCONN once the handle is dead, or the socket's own
 * error) is EIO, as qemu's client reports every request it could not
 * complete. */
static int last_errno(void)
{
    int e = lnbd.nbd_get_errno();

    switch (e) {
    case ENOTCONN:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE:
    case ESHUTDOWN:
        return -EIO;
    default:
        return e > 0 ? -e : -EIO;
    }
}

/* The base:allocation extents of one block status reply, as absolute
 * [.., end) ranges; at most max of them are kept. */
struct nbd_extent {
    uint64_t end;
    uint32_t flags;
};

struct extent_answer {
    uint64_t off, limit;
    size_t n, cap, max;
    struct nbd_extent *ext;
    bool got;
};

/* libnbd, with the connection's mutex held, once per metadata context. */
static int extent_cb(void *opaque, const char *context, uint64_t off, uint32_t *entries,
                     size_t n, int *error)
{
    struct extent_answer *ans = opaque;
    uint64_t pos = ans->off;
    (void)off;
    (void)error;

    if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) || ans->got)
        return 0;
    ans->got = true;
    for (size_t i = 0; i + 1 < n && ans->n < ans->max && pos < ans->limit; i += 2) {
        if (entries[i] == 0)
            break;              /* a broken reply: keep what came before */
        if (ans->n == ans->cap) {
            size_t cap = ans->cap ? ans->cap * 2 : 16;
            struct nbd_extent *x = reallocarray(ans->ext, cap, sizeof(*x));
            if (!x)
                break;
            ans->ext = x;
            ans->cap = cap;
        }
        pos = min_u64(pos + entries[i], ans->limit);
        ans->ext[ans->n].end = pos;
        ans->ext[ans->n].flags = entries[i + 1];
        ans->n++;
    }
    return 0;
}

static int conn_init(struct nbd_conn *c, struct nbd_handle *h)
{
    memset(c, 0, sizeof(*c));
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0)
        return -errno;
    c->h = h;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->gate, NULL);
    c->depth = 1;
    /* A Unix socket's peer: the server's pid, for conn_probe() */
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    int fd = lnbd.nbd_aio_get_fd(h);
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 &&
        clen == sizeof(cred) && cred.pid > 0 && cred.pid != getpid())
        c->peer = cred.pid;
    return 0;
}

/* --- requests in flight ---
 *
 * Every command goes out through libnbd's asynchronous calls, so that the
 * copy engine's threads keep several requests in flight on one connection
 * (qemu's client pipelines the same way; a server with worker threads, such
 * as nbdkit, then reads its disk for one request while it sends another).
 * libnbd acts only inside our calls, and we make them only under the
 * connection's mutex. Whoever waits first becomes the poller: it polls the
 * socket without the mutex, then lets libnbd read or write under it; the
 * completion callbacks wake their own waiters, and a poller whose request is
 * done hands the duty to one waiter. A submitter that needs the socket
 * written while the poller waits only for replies pokes its eventfd. */

/* One command. Two owners: the waiting caller and libnbd (which calls the
 * completion's free function exactly once, even when submission fails). */
struct nbd_req {
    pthread_cond_t cv;
    int refs;                   /* atomic */
    bool done, queued;
    int err;                    /* errno from the server or libnbd, 0 on success */
    struct nbd_req *next;       /* in conn->waiters while queued */
    struct extent_answer ans;   /* block status only */
    struct nbd_conn *conn;
};

static struct nbd_req *req_new(void)
{
    struct nbd_req *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    pthread_cond_init(&r->cv, NULL);
    r->refs = 2;
    return r;
}

static void req_unref(void *opaque)
{
    struct nbd_req *r = opaque;

    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_cond_destroy(&r->cv);
        free(r->ans.ext);
        free(r);
    }
}

static void waiter_remove(struct nbd_conn *c, struct nbd_req *r)
{
    for (struct nbd_req **p = &c->waiters; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    r->queued = false;
}

/* libnbd, with c->mu held: the command retired. */
static int req_done(void *opaque, int *error)
{
    struct nbd_req *r = opaque;
    struct nbd_conn *c = r->conn;

    r->err = *error;
    r->done = true;
    if (r->queued)
        waiter_remove(c, r);
    pthread_cond_signal(&r->cv);
    return 1;                   /* retire the command */
}

static void conn_fail(struct nbd_conn *c, int e)
{
    if (!c->dead)
        c->dead = e > 0 ? e : EIO;
    pthread_cond_broadcast(&c->gate);
    while (c->waiters) {
        struct nbd_req *w = c->waiters;
        waiter_remove(c, w);
        pthread_cond_signal(&w->cv);
    }
}

/* One round of polling, entered and left with c->mu held. */
static void conn_poll(struct nbd_conn *c)
{
    unsigned dir = lnbd.nbd_aio_get_direction(c->h);
    int fd = lnbd.nbd_aio_get_fd(c->h);
    struct pollfd p[2] = {
        { .fd = fd, .events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                      ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0)) },
        { .fd = c->efd, .events = POLLIN },
    };
    int n, r = 0;

    if (fd < 0) {
        conn_fail(c, EIO);
        return;
    }
    c->polling = true;
    c->poll_events = p[0].events;
    pthread_mutex_unlock(&c->mu);
    n = poll(p, 2, -1);
    int e = errno;
    pthread_mutex_lock(&c->mu);
    c->polling = false;
    if (n < 0) {
        if (e != EINTR)
            conn_fail(c, e);
        return;
    }
    if (p[1].revents & POLLIN) {
        uint64_t v;
        if (read(c->efd, &v, sizeof(v)) < 0) {
            /* nothing to drain: another poller got it */
        }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
        r = lnbd.nbd_aio_notify_read(c->h);
    else if (p[0].revents & POLLOUT)
        r = lnbd.nbd_aio_notify_write(c->h);
    if (r < 0)
        conn_fail(c, lnbd.nbd_get_errno());
}

/* Wait, with c->mu held, until r retires; 0 or -errno. */
static int conn_wait(struct nbd_conn *c, struct nbd_req *r)
{
    while (!r->done && !c->dead) {
        if (!c->polling) {
            conn_poll(c);
            continue;
        }
        r->queued = true;
        r->next = c->waiters;
        c->waiters = r;
        pthread_cond_wait(&r->cv, &c->mu);
        if (r->queued)
            waiter_remove(c, r);
    }
    /* hand the polling over to a caller still waiting */
    if (!c->polling && c->waiters) {
        struct nbd_req *w = c->waiters;
        waiter_remove(c, w);
        pthread_cond_signal(&w->cv);
    }
    if (!r->done)
        return -EIO;            /* the connection is lost: qemu's EIO */
    if (r->err) {
        switch (r->err) {
        case ENOTCONN: case ECONNRESET: case ECONNABORTED: case EPIPE: case ESHUTDOWN:
            return -EIO;
        default:
            return -r->err;
        }
    }
    return 0;
}

/* A command is queued: if libnbd now needs the socket writable and the
 * poller waits only for replies, wake it to look again. */
static void conn_kick(struct nbd_conn *c)
{
    if (c->polling && !(c->poll_events & POLLOUT) &&
        (lnbd.nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE)) {
        uint64_t one = 1;
        if (write(c->efd, &one, sizeof(one)) < 0) {
            /* the counter is already non-zero: the poller wakes anyway */
        }
    }
}

enum nbd_op { OP_READ, OP_WRITE, OP_ZERO, OP_TRIM, OP_FLUSH, OP_STATUS };

struct nbd_cmd {
    enum nbd_op op;
    void *buf;
    uint64_t len, off;
    uint32_t flags;
};

/* The connection for the next command: the least busy one; another is
 * opened (multi-conn servers only) when every one has a queue. */
static struct nbd_conn *conn_pick(struct nbd_state *s)
{
    int n = __atomic_load_n(&s->nconn, __ATOMIC_ACQUIRE);
    struct nbd_conn *best = &s->conn[0];
    unsigned best_load = __atomic_load_n(&best->inflight, __ATOMIC_RELAXED);

    for (int i = 1; i < n && best_load; i++) {
        unsigned l = __atomic_load_n(&s->conn[i].inflight, __ATOMIC_RELAXED);
        if (l < best_load) {
            best = &s->conn[i];
            best_load = l;
        }
    }
    if (best_load >= NBD_CONN_DEPTH && s->can_multi_conn &&
        !__atomic_load_n(&s->pool_full, __ATOMIC_RELAXED) &&
        pthread_mutex_trylock(&s->pool_mu) == 0) {
        n = s->nconn;
        if (n < NBD_MAX_CONNS && !s->pool_full) {
            struct err e;
            err_init(&e);
            struct nbd_handle *h = connect_handle(&s->addr, NBD_EXTRA_CONNECT_MS, &e);
            if (h && conn_init(&s->conn[n], h) == 0) {
                best = &s->conn[n];
                __atomic_store_n(&s->nconn, n + 1, __ATOMIC_RELEASE);
                if (n + 1 == NBD_MAX_CONNS)
                    __atomic_store_n(&s->pool_full, true, __ATOMIC_RELAXED);
            } else {
                if (h)
                    lnbd.nbd_close(h);
                __atomic_store_n(&s->pool_full, true, __ATOMIC_RELAXED);
            }
        }
        pthread_mutex_unlock(&s->pool_mu);
    }
    return best;
}

/* The CPU time, in seconds, that the server process has used so far, or
 * -1 when we cannot see it (a server across the network, another PID
 * namespace). For a Unix socket the kernel tells us the server's pid. The
 * process CPU clock counts threads that have exited too (qemu-nbd's pool
 * threads come and go within a window: a sum over the live threads'
 * schedstat lost theirs and judged the deep queue cheap about half the
 * time), to the nanosecond. */
static double server_cpu(pid_t pid)
{
    clockid_t clk;
    struct timespec ts;

    if (pid <= 0 || clock_getcpuclockid(pid, &clk) != 0 || clock_gettime(clk, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Pipelining pays only where the server works on several requests at once:
 * nbdkit's threads read one request's data while another's is sent, but
 * qemu-nbd serves a deeper queue at a far higher cost: on the 2-core bench
 * machine, copying 1 GiB from a qemu-nbd qcow2 export took qemu-nbd 0.38 s
 * of CPU with one request in flight, 1.10 s with two and 2.8 s with eight
 * (wall time 1.2 s, 2.1 s and 5.2 s; qemu-img's own client, eight in
 * flight: 3.9 s), while nbdkit's file plugin used the same 0.4 s at any
 * depth and finished sooner at depth 8. The protocol does not say which
 * kind of server it is, so after a warm-up (first touches of buffers and
 * caches are slow at any depth) windows of NBD_PROBE_BYTES of data
 * alternate between one request at a time and up to NBD_PIPE_DEPTH in
 * flight, NBD_PROBE_ROUNDS each, and the cheapest window of each depth is
 * kept. When the server is on this machine (a Unix socket: the kernel
 * gives its pid) the measure is the server's own CPU time, which other
 * load on the machine hardly disturbs: the deeper queue stays unless it
 * costs the server half as much again. Otherwise it is the window's wall
 * time (at the mercy of the machine's other load, hence the best of three)
 * and the deeper queue stays unless clearly slower (qemu-nbd's are three to
 * four times slower, nbdkit's as fast or faster). Called with c->mu held
 * after each data command. */
static void conn_probe(struct nbd_conn *c, uint64_t bytes)
{
    struct timespec now;
    double dt, cpu;

    if (c->phase > 2 * NBD_PROBE_ROUNDS)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (c->win_bytes == 0) {
        c->win_start = now;
        c->win_cpu = server_cpu(c->peer);
    }
    c->win_bytes += bytes;
    if (c->win_bytes < (c->phase ? NBD_PROBE_BYTES : 2 * NBD_PROBE_BYTES))
        return;
    dt = (double)(now.tv_sec - c->win_start.tv_sec) +
         (double)(now.tv_nsec - c->win_start.tv_nsec) * 1e-9;
    cpu = c->win_cpu >= 0 ? server_cpu(c->peer) : -1;
    if (cpu < 0)
        c->peer = 0;            /* not visible after all: time the windows */
    if (c->phase > 0) {         /* phase 0 is the warm-up, not measured */
        bool one = c->phase % 2;
        double *t = one ? &c->t_one : &c->t_deep, *k = one ? &c->cpu_one : &c->cpu_deep;
        if (*t == 0 || dt < *t)
            *t = dt;
        if (cpu >= 0 && (*k == 0 || cpu - c->win_cpu < *k))
            *k = cpu - c->win_cpu;
    }
    c->phase++;
    if (c->phase <= 2 * NBD_PROBE_ROUNDS)
        c->depth = c->phase % 2 ? 1 : NBD_PIPE_DEPTH;
    else if (c->peer > 0)
        c->depth = c->cpu_deep <= c->cpu_one * 1.5 + 0.002 ? NBD_PIPE_DEPTH : 1;
    else
        c->depth = c->t_deep <= c->t_one * 1.3 ? NBD_PIPE_DEPTH : 1;
    c->win_bytes = 0;
    pthread_cond_broadcast(&c->gate);
}

/* Submit one command on c (mu held, a place under the gate taken): 0 or
 * -errno. */
static int cmd_submit(struct nbd_conn *c, const struct nbd_cmd *cmd, struct nbd_req *r)
{
    nbd_completion_callback done = { .callback = req_done, .user_data = r, .free = req_unref };
    int64_t cookie;

    switch (cmd->op) {
    case OP_READ:
        cookie = lnbd.nbd_aio_pread(c->h, cmd->buf, cmd->len, cmd->off, done, 0);
        break;
    case OP_WRITE:
        cookie = lnbd.nbd_aio_pwrite(c->h, cmd->buf, cmd->len, cmd->off, done, 0);
        break;
    case OP_ZERO:
        cookie = lnbd.nbd_aio_zero(c->h, cmd->len, cmd->off, done, cmd->flags);
        break;
    case OP_TRIM:
        cookie = lnbd.nbd_aio_trim(c->h, cmd->len, cmd->off, done, 0);
        break;
    case OP_FLUSH:
        cookie = lnbd.nbd_aio_flush(c->h, done, 0);
        break;
    case OP_STATUS:
    default:
        cookie = lnbd.nbd_aio_block_status(c->h, cmd->len, cmd->off,
                                           (nbd_extent_callback){ .callback = extent_cb,
                                                                  .user_data = &r->ans },
                                           done, cmd->flags);
        break;
    }
    if (cookie >= 0)
        return 0;
    /* libnbd already dropped its reference. A handle that died under
     * another caller refuses new commands as "invalid state" (EINVAL):
     * that is the lost connection, qemu's EIO. */
    if (lnbd.nbd_aio_is_dead(c->h) == 1 || lnbd.nbd_aio_is_closed(c->h) == 1) {
        conn_fail(c, EIO);
        return -EIO;
    }
    return last_errno();
}

/* Run n commands (at most NBD_PIPE_DEPTH) on one connection and wait for
 * their replies: 0 or the first -errno. They are sent together when the
 * connection's depth leaves room for all of them (a copy step's pieces
 * are then served at once), else one after another. ans, for a single
 * block status command, receives its extents. */
static int nbd_run_n(struct nbd_state *s, const struct nbd_cmd *cmds, unsigned n,
                     struct extent_answer *ans)
{
    struct nbd_conn *c = conn_pick(s);
    struct nbd_req *reqs[NBD_PIPE_DEPTH];
    unsigned i = 0;
    int ret = 0;

    __atomic_add_fetch(&c->inflight, n, __ATOMIC_RELAXED);
    pthread_mutex_lock(&c->mu);
    while (i < n && ret == 0) {
        unsigned batch, sent = 0;
        /* the probe may change the depth while we wait */
        for (;;) {
            batch = n - i <= c->depth ? n - i : 1;
            if (c->dead || c->active + batch <= c->depth)
                break;
            pthread_cond_wait(&c->gate, &c->mu);
        }
        if (c->dead) {
            ret = -EIO;
            break;
        }
        c->active += batch;
        for (; sent < batch; sent++) {
            struct nbd_req *r = req_new();
            if (!r) {
                ret = -ENOMEM;
                break;
            }
            r->conn = c;
            if (ans)
                r->ans = *ans;
            if ((ret = cmd_submit(c, &cmds[i + sent], r)) < 0) {
                req_unref(r);
                break;
            }
            reqs[sent] = r;
        }
        if (sent)
            conn_kick(c);
        for (unsigned k = 0; k < sent; k++) {
            struct nbd_req *r = reqs[k];
            const struct nbd_cmd *cmd = &cmds[i + k];
            int e = conn_wait(c, r);
            if (e == 0 && ans) {
                *ans = r->ans;
                r->ans.ext = NULL;
            }
            if (e == 0 && (cmd->op == OP_READ || cmd->op == OP_WRITE))
                conn_probe(c, cmd->len);
            if (ret == 0 && e < 0)
                ret = e;
            req_unref(r);
        }
        c->active -= batch;
        pthread_cond_broadcast(&c->gate);
        i += batch;
    }
    pthread_mutex_unlock(&c->mu);
    __atomic_sub_fetch(&c->inflight, n, __ATOMIC_RELAXED);
    return ret;
}

/* Send one command and wait for its reply: 0 or -errno. */
static int nbd_run(struct nbd_state *s, const struct nbd_cmd *cmd, struct extent_answer *ans)
{
    return nbd_run_n(s, cmd, 1, ans);
}

/* A READ or WRITE of any length, in commands of NBD_DATA_REQUEST. */
static int nbd_data(struct nbd_state *s, enum nbd_op op, uint8_t *p, uint64_t off, uint64_t len)
{
    uint64_t chunk = min_u64(s->max_req, NBD_DATA_REQUEST);

    while (len) {
        struct nbd_cmd cmds[NBD_PIPE_DEPTH];
        unsigned n = 0;
        for (; n < NBD_PIPE_DEPTH && len; n++) {
            uint64_t k = min_u64(len, chunk);
            cmds[n] = (struct nbd_cmd){ op, p, k, off, 0 };
            p += k;
            off += k;
            len -= k;
        }
        int r = nbd_run_n(s, cmds, n, NULL);
        if (r)
            return r;
    }
    return 0;
}

/* --- life --- */

static int nbdc_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct nbd_state *s = bs->opaque;
    struct nbd_handle *h;
    int64_t size, v;
    int r;

    r = addr_parse(bs->filename, opts, &s->addr, err);
    if (r < 0)
        goto fail_addr;
    if ((r = dynlib_load(&libnbd_lib, err)) < 0)
        goto fail_addr;
    h = connect_handle(&s->addr, -1, err);
    if (!h) {
        r = -(err && err->code ? err->code : EIO);
        goto fail_addr;
    }
    if ((flags & BLK_O_RDWR) && lnbd.nbd_is_read_only(h) == 1) {
        r = err_set_errno(err, EACCES, "Could not open image");
        goto fail_handle;
    }
    size = lnbd.nbd_get_size(h);
    if (size < 0) {
        r = err_set(err, EIO, "%s", lnbd.nbd_get_error());
        goto fail_handle;
    }
    s->size = (uint64_t)size;
    s->can_multi_conn = lnbd.nbd_can_multi_conn(h) == 1;
    s->can_zero = lnbd.nbd_can_zero(h) == 1;
    s->can_fast_zero = lnbd.nbd_can_fast_zero(h) == 1;
    s->can_trim = lnbd.nbd_can_trim(h) == 1;
    s->can_flush = lnbd.nbd_can_flush(h) == 1;
    s->has_alloc = lnbd.nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    v = lnbd.nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    s->min_block = v > 1 && v <= 65536 && !(v & (v - 1)) ? (uint32_t)v : 1;
    v = lnbd.nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    s->max_req = v >= s->min_block && v > 0 && v < NBD_MAX_REQUEST ? (uint32_t)v : NBD_MAX_REQUEST;
    s->max_req -= s->max_req % s->min_block;
    if ((r = conn_init(&s->conn[0], h)) < 0) {
        err_set_errno(err, -r, "Could not create an eventfd");
        goto fail_handle;
    }
    pthread_mutex_init(&s->pool_mu, NULL);
    s->nconn = 1;
    s->cache_on = !(flags & BLK_O_RDWR);
    pthread_mutex_init(&s->cache_mu, NULL);

    bs->total_size = s->size;
    bs->request_alignment = s->min_block;
    free(bs->filename);
    bs->filename = addr_filename(&s->addr);
    return 0;

fail_handle:
    lnbd.nbd_close(h);
fail_addr:
    addr_release(&s->addr);
    return r;
}

static void nbdc_close(struct bds *bs)
{
    struct nbd_state *s = bs->opaque;

    for (int i = 0; i < s->nconn; i++) {
        lnbd.nbd_shutdown(s->conn[i].h, 0);
        lnbd.nbd_close(s->conn[i].h);
        pthread_mutex_destroy(&s->conn[i].mu);
        pthread_cond_destroy(&s->conn[i].gate);
        close(s->conn[i].efd);
    }
    pthread_mutex_destroy(&s->pool_mu);
    pthread_mutex_destroy(&s->cache_mu);
    free(s->cache_ext);
    addr_release(&s->addr);
}

/* --- data --- */

static int nbdc_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct nbd_state *s = bs->opaque;
    uint8_t *p = buf;

    /* The core rounds lengths to sectors: the tail past the export is zero. */
    if (off >= s->size) {
        memset(p, 0, (size_t)len);
        return 0;
    }
    if (off + len > s->size) {
        memset(p + (s->size - off), 0, (size_t)(off + len - s->size));
        len = s->size - off;
    }
    return nbd_data(s, OP_READ, p, off, len);
}

/* An export has a fixed size, but the core sees it rounded up to whole
 * sectors (as qemu does): writes into that rounding are dropped, writes past
 * it cannot be done. */
static int clip_to_export(const struct nbd_state *s, uint64_t off, uint64_t *len)
{
    if (off + *len <= s->size)
        return 0;
    if (off + *len > align_up_u64(s->size, 512))
        return -ENOSPC;
    *len = off >= s->size ? 0 : s->size - off;
    return 0;
}

/* Our own writes change what block status would say. */
static void cache_drop(struct nbd_state *s)
{
    if (!s->cache_on)
        return;
    pthread_mutex_lock(&s->cache_mu);
    s->cache_n = 0;
    pthread_mutex_unlock(&s->cache_mu);
}

static int nbdc_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct nbd_state *s = bs->opaque;
    const uint8_t *p = buf;
    (void)flags;

    if (clip_to_export(s, off, &len) < 0)
        return -ENOSPC;
    cache_drop(s);
    return nbd_data(s, OP_WRITE, (uint8_t *)(uintptr_t)p, off, len);
}

static int write_zero_buffer(struct bds *bs, uint64_t off, uint64_t len)
{
    struct nbd_state *s = bs->opaque;
    size_t bufsz = (size_t)min_u64(len, s->max_req);
    void *zero = calloc(1, bufsz);
    int r = 0;

    if (!zero)
        return -ENOMEM;
    while (len && !r) {
        size_t n = (size_t)min_u64(len, bufsz);
        r = nbdc_pwrite(bs, off, n, zero, 0);
        off += n;
        len -= n;
    }
    free(zero);
    return r;
}

static int nbdc_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    struct nbd_state *s = bs->opaque;
    uint32_t nflags = 0;
    uint64_t chunk = NBD_MAX_ZERO - NBD_MAX_ZERO % s->min_block;

    if (clip_to_export(s, off, &len) < 0)
        return -ENOSPC;
    if (!len)
        return 0;
    if (!s->can_zero || ((flags & BLK_WRITE_NO_FALLBACK) && !s->can_fast_zero)) {
        if (flags & BLK_WRITE_NO_FALLBACK)
            return -ENOTSUP;
        return write_zero_buffer(bs, off, len);
    }
    if (!(flags & BLK_WRITE_MAY_UNMAP))
        nflags |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (flags & BLK_WRITE_NO_FALLBACK)
        nflags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    cache_drop(s);
    while (len) {
        uint64_t n = min_u64(len, chunk);
        int r = nbd_run(s, &(struct nbd_cmd){ OP_ZERO, NULL, n, off, nflags }, NULL);
        if (r == -EOPNOTSUPP)
            r = -ENOTSUP;
        if (r)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static int nbdc_discard(struct bds *bs, uint64_t off, uint64_t len)
{
    struct nbd_state *s = bs->opaque;
    uint64_t chunk = NBD_MAX_ZERO - NBD_MAX_ZERO % s->min_block;

    if (!s->can_trim)
        return -ENOTSUP;
    if (off >= s->size)
        return 0;
    len = min_u64(len, s->size - off);
    cache_drop(s);
    while (len) {
        uint64_t n = min_u64(len, chunk);
        int r = nbd_run(s, &(struct nbd_cmd){ OP_TRIM, NULL, n, off, 0 }, NULL);
        if (r)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

static int nbdc_flush(struct bds *bs)
{
    struct nbd_state *s = bs->opaque;

    /* Sent even with cache=unsafe: as in qemu, where NBD's flush is a
     * flush to the OS (the server's), which BDRV_O_NO_FLUSH leaves alone,
     * so a convert or dd to an export ends with the data on the server's
     * disk. */
    if (!s->can_flush)
        return 0;
    /* With multi-conn the server promises that a flush on one connection
     * covers the writes completed on all of them; without it there is only
     * one. */
    return nbd_run(s, &(struct nbd_cmd){ OP_FLUSH, NULL, 0, 0, 0 }, NULL);
}

/* Block status of [off, ...) from the extents kept from the last answer:
 * the flags, or -1 when off is not covered. */
static int cache_lookup(struct nbd_state *s, uint64_t off, uint64_t *end)
{
    int ret = -1;

    pthread_mutex_lock(&s->cache_mu);
    if (s->cache_n && off >= s->cache_off && off < s->cache_ext[s->cache_n - 1].end) {
        size_t lo = 0, hi = s->cache_n - 1;
        while (lo < hi) {       /* first extent ending after off */
            size_t mid = lo + (hi - lo) / 2;
            if (s->cache_ext[mid].end <= off)
                lo = mid + 1;
            else
                hi = mid;
        }
        *end = s->cache_ext[lo].end;
        ret = (int)s->cache_ext[lo].flags;
    }
    pthread_mutex_unlock(&s->cache_mu);
    return ret;
}

static int nbdc_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, struct bds **file)
{
    struct nbd_state *s = bs->opaque;
    struct extent_answer ans = { 0 };
    uint64_t end;
    int flags, ret;

    *map = off;
    *file = bs;
    if (!s->has_alloc) {
        *pnum = len;
        return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID | BLK_STATUS_ALLOCATED;
    }
    if (off >= s->size) {       /* the sector-rounded tail */
        *pnum = len;
        return BLK_STATUS_ZERO | BLK_STATUS_ALLOCATED;
    }
    flags = s->cache_on ? cache_lookup(s, off, &end) : -1;
    if (flags < 0) {
        /* A read-only export is asked for everything up to its end at once
         * and the answer kept: a copy then walks the map without a round
         * trip per extent (pass one and pass two of convert alike). */
        uint64_t want = s->cache_on ? s->size - off : min_u64(len, s->size - off);
        uint64_t n = min_u64(want, UINT32_MAX - UINT32_MAX % s->min_block);
        if (s->min_block > 1 && n % s->min_block)
            n = align_up_u64(n, s->min_block) <= s->size - off ? align_up_u64(n, s->min_block) : n;
        ans.off = off;
        ans.limit = off + n;
        ans.max = s->cache_on ? NBD_CACHE_MAX : 1;
        int r = nbd_run(s, &(struct nbd_cmd){ OP_STATUS, NULL, n, off,
                                              s->cache_on ? 0 : LIBNBD_CMD_FLAG_REQ_ONE }, &ans);
        if (r)
            return r;
        if (!ans.n || ans.ext[0].end <= off) {
            free(ans.ext);
            return -EIO;        /* qemu: "Server did not reply with any status extents" */
        }
        flags = (int)ans.ext[0].flags;
        end = ans.ext[0].end;
        if (s->cache_on) {
            pthread_mutex_lock(&s->cache_mu);
            free(s->cache_ext);
            s->cache_ext = ans.ext;
            s->cache_n = ans.n;
            s->cache_off = off;
            pthread_mutex_unlock(&s->cache_mu);
            ans.ext = NULL;
        }
        free(ans.ext);
    }
    *pnum = min_u64(end - off, len);
    ret = BLK_STATUS_OFFSET_VALID;
    if (!(flags & LIBNBD_STATE_HOLE))
        ret |= BLK_STATUS_DATA;
    if (flags & LIBNBD_STATE_ZERO)
        ret |= BLK_STATUS_ZERO;
    if (ret & (BLK_STATUS_DATA | BLK_STATUS_ZERO))
        ret |= BLK_STATUS_ALLOCATED;
    return ret;
}

/* --- size --- */

static int nbdc_truncate(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                           struct err *err)
{
    struct nbd_state *s = bs->opaque;
    (void)prealloc;

    if (size != s->size && exact)
        return err_set(err, ENOTSUP, "Cannot resize NBD nodes");
    if (size > s->size)
        return err_set(err, EINVAL, "Cannot grow NBD nodes");
    return 0;
}

/* qemu's fallback for protocols that cannot create: open the existing
 * export, check that the size fits, clear the first sector. */
static int nbdc_create(const char *filename, struct kvopts *opts, struct err *err)
{
    struct err e;
    struct bds *bs;
    uint64_t size = 0;
    int r;

    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0)
        return r;
    const char *pa = kvopts_get(opts, "preallocation");
    enum blk_prealloc prealloc = BLK_PREALLOC_OFF;
    if (pa && (r = blk_parse_prealloc(pa, ~0u, &prealloc, err)) < 0)
        return r;
    if (prealloc != BLK_PREALLOC_OFF)
        return err_set(err, ENOTSUP, "Unsupported preallocation mode '%s'",
                       blk_prealloc_name(prealloc));
    err_init(&e);
    bs = blk_open_protocol(filename, BLK_O_RDWR, &e);
    if (!bs)
        return err_set(err, e.code ? e.code : EIO,
                       "Protocol driver 'nbd' does not support image creation, and opening the image failed: %s",
                       e.msg);
    r = blk_truncate(bs, size, false, BLK_PREALLOC_OFF, err);
    if (r == 0 && bs->total_size) {
        r = blk_pwrite_zeroes(bs, 0, min_u64(bs->total_size, 512), BLK_WRITE_MAY_UNMAP);
        if (r < 0)
            err_set_errno(err, -r, "Failed to clear the new image's first sector");
    }
    if (r == 0 && (r = blk_flush(bs)) < 0)
        err_set_errno(err, -r, "Could not flush '%s'", filename);
    blk_close(bs);
    return r;
}

/* qemu's bdrv_create_opts_simple, the options of the fallback above. */
static const struct opt_desc nbdc_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", OPT_STRING, "Preallocation mode (allowed values: off)", NULL },
    { NULL, 0, NULL, NULL },
};

/* qemu's nbd has no driver info: "info" shows no dirty flag. */
static int nbdc_get_info(struct bds *bs, struct blk_info *bi)
{
    (void)bs;
    (void)bi;
    return -ENOTSUP;
}

static bool nbdc_has_zero_init(struct bds *bs)
{
    (void)bs;
    return false;
}

const struct blk_driver nbd_driver = {
    .name = "nbd",
    .kind = BLK_KIND_PROTOCOL,
    .instance_size = sizeof(struct nbd_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .create_opts = nbdc_create_opts,
    .claims = nbdc_claims,
    .open = nbdc_open,
    .close = nbdc_close,
    .create = nbdc_create,
    .pread = nbdc_pread,
    .pwrite = nbdc_pwrite,
    .pwrite_zeroes = nbdc_pwrite_zeroes,
    .discard = nbdc_discard,
    .flush = nbdc_flush,
    .block_status = nbdc_block_status,
    .truncate = nbdc_truncate,
    .get_info = nbdc_get_info,
    .has_zero_init = nbdc_has_zero_init,
};

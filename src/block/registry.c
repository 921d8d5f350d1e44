/* The explicit, ordered table of drivers. A new format is one row here
 * (probe order matters only for ties: the highest score wins, the earlier
 * row wins a tie). */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config.h"

#include "block/driver.h"
#include "block/internal.h"
#include "block/registry.h"

extern const struct blk_driver file_driver;
extern const struct blk_driver mem_driver;
extern const struct blk_driver raw_driver;
extern const struct blk_driver qed_driver;
extern const struct blk_driver qcow_driver;
extern const struct blk_driver parallels_driver;
extern const struct blk_driver qcow2_driver;
extern const struct blk_driver vhdx_driver;
extern const struct blk_driver vmdk_driver;
extern const struct blk_driver vdi_driver;
extern const struct blk_driver vpc_driver;
extern const struct blk_driver dmg_driver;
extern const struct blk_driver bochs_driver;
extern const struct blk_driver cloop_driver;
extern const struct blk_driver luks_driver;
#ifdef HAVE_LIBNBD
extern const struct blk_driver nbd_driver;
#endif
#ifdef HAVE_LIBCURL
extern const struct blk_driver http_driver;
extern const struct blk_driver https_driver;
#endif

/* What a node becomes when a reopen failed: every operation is ENOTSUP. */
const struct blk_driver blk_dead_driver = {
    .name = "dead",
    .kind = BLK_KIND_FORMAT,
};

static const struct blk_driver *const drivers[] = {
    &mem_driver,        /* in-memory, for tests and fuzzers (protocols/mem.h); first, so
                           its exclusive mode claims every name */
    &file_driver,
    &raw_driver,
    &qed_driver,
    &qcow_driver,
    &parallels_driver,
    &qcow2_driver,
    &vhdx_driver,
    &vmdk_driver,
    &vdi_driver,
    &vpc_driver,
    &dmg_driver,        /* before cloop: both score 2, qemu tries dmg first */
    &bochs_driver,
    &cloop_driver,
    &luks_driver,
#ifdef HAVE_LIBNBD
    &nbd_driver,
#endif
#ifdef HAVE_LIBCURL
    &http_driver,
    &https_driver,
#endif
};

const struct blk_driver *const *blk_drivers(size_t *n)
{
    *n = sizeof(drivers) / sizeof(drivers[0]);
    return drivers;
}

const struct blk_driver *blk_find_format(const char *name)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(d[i]->name, name))
            return d[i];
    return NULL;
}

bool blk_qemu_has_driver(const char *name)
{
    /* qemu-img 7.2's "Supported formats" list, Debian 12's build */
    static const char *const names[] = {
        "blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress",
        "copy-before-write", "copy-on-read", "dmg", "file", "ftp", "ftps", "gluster",
        "host_cdrom", "host_device", "http", "https", "iscsi", "iser", "luks", "nbd",
        "nfs", "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow",
        "qcow2", "qed", "quorum", "raw", "rbd", "replication", "snapshot-access",
        "ssh", "throttle", "vdi", "vhdx", "vmdk", "vpc", "vvfat",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(names[i], name))
            return true;
    return blk_find_format(name) != NULL;
}

/* --- protocol lookup (qemu's bdrv_find_protocol / path_has_protocol) ---
 *
 * A name has a protocol prefix when a ':' comes before any '/' ("./a:b" is
 * a file). The prefix must then be one of qemu 7.2's protocol names: qimg
 * serves those it implements, the others are known (so that messages name
 * the driver as qemu does) but fail, and any other prefix is an
 * "Unknown protocol" error. Nothing here ever falls back to a local file
 * named "foo:bar". */

/* How a qemu protocol qimg does not implement behaves on create: no create
 * options at all, qemu's generic create (bdrv_create_opts_simple: the
 * "opening the image failed" message), or its own create. */
enum stub_create { STUB_NO_CREATE, STUB_SIMPLE_CREATE, STUB_OWN_CREATE };

static const struct qemu_protocol {
    const char *prefix;         /* protocol_name in qemu 7.2 */
    const char *driver;         /* qemu's format_name, named in messages */
    enum stub_create create;    /* when qimg has no driver of that name */
} qemu_protocols[] = {
    { "file", "file", STUB_OWN_CREATE },
    { "nbd", "nbd", STUB_SIMPLE_CREATE },
    { "nbd+tcp", "nbd", STUB_SIMPLE_CREATE },
    { "nbd+unix", "nbd", STUB_SIMPLE_CREATE },
    { "http", "http", STUB_NO_CREATE },
    { "https", "https", STUB_NO_CREATE },
    { "ftp", "ftp", STUB_NO_CREATE },
    { "ftps", "ftps", STUB_NO_CREATE },
    { "blkdebug", "blkdebug", STUB_NO_CREATE },
    { "blkverify", "blkverify", STUB_NO_CREATE },
    { "null-co", "null-co", STUB_NO_CREATE },
    { "null-aio", "null-aio", STUB_NO_CREATE },
    { "fat", "vvfat", STUB_NO_CREATE },
    { "host_device", "host_device", STUB_SIMPLE_CREATE },
    { "host_cdrom", "host_cdrom", STUB_SIMPLE_CREATE },
    { "iscsi", "iscsi", STUB_SIMPLE_CREATE },
    { "iser", "iser", STUB_SIMPLE_CREATE },
    { "nvme", "nvme", STUB_SIMPLE_CREATE },
    { "gluster", "gluster", STUB_OWN_CREATE },
    { "gluster+tcp", "gluster", STUB_OWN_CREATE },
    { "gluster+unix", "gluster", STUB_OWN_CREATE },
    { "gluster+rdma", "gluster", STUB_OWN_CREATE },
    { "nfs", "nfs", STUB_OWN_CREATE },
    { "rbd", "rbd", STUB_OWN_CREATE },
    { "ssh", "ssh", STUB_OWN_CREATE },
};

#define N_QEMU_PROTOCOLS (sizeof(qemu_protocols) / sizeof(qemu_protocols[0]))

bool blk_path_has_protocol(const char *filename)
{
    return filename[strcspn(filename, ":/")] == ':';
}

/* The prefix as qemu copies it (into a 128-byte buffer). */
static int prefix_len(const char *filename)
{
    size_t len = strcspn(filename, ":");
    return len > 127 ? 127 : (int)len;
}

/* What qemu's driver says when it cannot open these names, where that
 * depends on the name alone; otherwise qimg says it lacks the driver. */
static int stub_open_error(const char *filename, const char *driver, struct err *err)
{
    if (!strcmp(driver, "null-co") || !strcmp(driver, "null-aio")) {
        if (strncmp(filename, driver, strlen(driver)) || strcmp(filename + strlen(driver), "://"))
            return err_set(err, EINVAL, "The only allowed filename for this driver is '%s://'",
                           driver);
    }
    if (!strcmp(driver, "ftp") || !strcmp(driver, "ftps") || !strcmp(driver, "http") ||
        !strcmp(driver, "https")) {
        size_t n = strlen(driver);
        if (strncasecmp(filename, driver, n) || strncmp(filename + n, "://", 3))
            return err_set(err, EINVAL, "%s curl driver cannot handle the URL '%s' (does not "
                           "start with '%s://')", driver, filename, driver);
    }
    if (!strcmp(driver, "host_device") || !strcmp(driver, "host_cdrom")) {
        const char *path = strchr(filename, ':') ? strchr(filename, ':') + 1 : filename;
        struct stat st;
        if (stat(path, &st) < 0)
            return err_set_errno(err, errno, "Could not open '%s'", path);
        if (!S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode))
            return err_set(err, EINVAL, "'%s' driver requires '%s' to be either a character "
                           "or block device", driver, path);
    }
    return err_set(err, ENOTSUP, "The '%s' protocol driver is not supported by qimg", driver);
}

static const struct qemu_protocol *stub_row(const struct blk_driver *drv)
{
    for (size_t i = 0; i < N_QEMU_PROTOCOLS; i++)
        if (!strcmp(qemu_protocols[i].driver, drv->name))
            return &qemu_protocols[i];
    return NULL;
}

static int stub_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    (void)opts; (void)flags;
    return stub_open_error(bs->filename, bs->drv->name, err);
}

static int unknown_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    (void)opts; (void)flags;
    return err_set(err, EINVAL, "Unknown protocol '%.*s'", prefix_len(bs->filename),
                   bs->filename);
}

static int unknown_create(const char *filename, struct kvopts *opts, struct err *err)
{
    (void)opts;
    return err_set(err, EINVAL, "Unknown protocol '%.*s'", prefix_len(filename), filename);
}

/* Stubs are looked up by name: the row tells which create behaviour. */
static int stub_create(const char *filename, struct kvopts *opts, struct err *err);

static const struct opt_desc stub_simple_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", OPT_STRING, "Preallocation mode (allowed values: off)", NULL },
    { NULL, 0, NULL, NULL },
};

static const struct opt_desc stub_own_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { NULL, 0, NULL, NULL },
};

#define STUB(n, c)                                                               \
    { .name = n, .kind = BLK_KIND_PROTOCOL, .open = stub_open,                  \
      .create = (c) == STUB_NO_CREATE ? NULL : stub_create,                     \
      .create_opts = (c) == STUB_SIMPLE_CREATE ? stub_simple_create_opts :      \
                     (c) == STUB_OWN_CREATE ? stub_own_create_opts : NULL }

static const struct blk_driver stub_drivers[] = {
    STUB("http", STUB_NO_CREATE), STUB("https", STUB_NO_CREATE),
    STUB("nbd", STUB_SIMPLE_CREATE),
    STUB("ftp", STUB_NO_CREATE), STUB("ftps", STUB_NO_CREATE),
    STUB("blkdebug", STUB_NO_CREATE), STUB("blkverify", STUB_NO_CREATE),
    STUB("null-co", STUB_NO_CREATE), STUB("null-aio", STUB_NO_CREATE),
    STUB("vvfat", STUB_NO_CREATE),
    STUB("host_device", STUB_SIMPLE_CREATE), STUB("host_cdrom", STUB_SIMPLE_CREATE),
    STUB("iscsi", STUB_SIMPLE_CREATE), STUB("iser", STUB_SIMPLE_CREATE),
    STUB("nvme", STUB_SIMPLE_CREATE),
    STUB("gluster", STUB_OWN_CREATE), STUB("nfs", STUB_OWN_CREATE),
    STUB("rbd", STUB_OWN_CREATE), STUB("ssh", STUB_OWN_CREATE),
};

/* What a name with an unknown prefix gets from the callers that want a
 * driver in any case: open and create fail with qemu's message. */
static const struct blk_driver unknown_protocol_driver = {
    .name = "unknown-protocol",
    .kind = BLK_KIND_PROTOCOL,
    .open = unknown_open,
    .create = unknown_create,
};

static int stub_create(const char *filename, struct kvopts *opts, struct err *err)
{
    const struct blk_driver *drv = blk_find_protocol_for(filename);
    const struct qemu_protocol *row = stub_row(drv);
    struct err e;

    (void)opts;
    err_init(&e);
    stub_open_error(filename, drv->name, &e);
    if (row && row->create == STUB_SIMPLE_CREATE)
        return err_set(err, ENOTSUP, "Protocol driver '%s' does not support image creation, "
                       "and opening the image failed: %s", drv->name, e.msg);
    return err_set(err, e.code, "%s", e.msg);
}

/* qimg's own names: the in-memory test protocol ("mem:", or every name in
 * its exclusive mode). */
static const struct blk_driver *claimed_by(const char *filename)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);

    for (size_t i = 0; i < n; i++)
        if (d[i]->kind == BLK_KIND_PROTOCOL && d[i]->claims && d[i]->claims(filename))
            return d[i];
    return NULL;
}

const struct blk_driver *blk_find_protocol(const char *filename, struct err *err)
{
    const struct blk_driver *drv = claimed_by(filename);
    int len;

    if (drv && !strcmp(drv->name, "mem"))
        return drv;
    if (!blk_path_has_protocol(filename))
        return &file_driver;
    len = prefix_len(filename);
    for (size_t i = 0; i < N_QEMU_PROTOCOLS; i++) {
        const struct qemu_protocol *p = &qemu_protocols[i];
        if ((int)strlen(p->prefix) != len || strncmp(p->prefix, filename, (size_t)len))
            continue;
        drv = blk_find_format(p->driver);
        if (drv && drv->kind == BLK_KIND_PROTOCOL)
            return drv;
        for (size_t k = 0; k < sizeof(stub_drivers) / sizeof(stub_drivers[0]); k++)
            if (!strcmp(stub_drivers[k].name, p->driver))
                return &stub_drivers[k];
        break;
    }
    err_set(err, EINVAL, "Unknown protocol '%.*s'", len, filename);
    return NULL;
}

const struct blk_driver *blk_find_protocol_for(const char *filename)
{
    const struct blk_driver *drv = blk_find_protocol(filename, NULL);
    return drv ? drv : &unknown_protocol_driver;
}

const struct blk_driver *blk_probe_format(const uint8_t *head, size_t len, const char *filename)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);
    const struct blk_driver *best = NULL;
    int best_score = 0;

    for (size_t i = 0; i < n; i++) {
        if (d[i]->kind != BLK_KIND_FORMAT || !d[i]->probe)
            continue;
        int score = d[i]->probe(head, len, filename);
        if (score > best_score) {
            best_score = score;
            best = d[i];
        }
    }
    return best;
}

const char *blk_driver_name(const struct blk_driver *drv) { return drv->name; }
const struct opt_desc *blk_driver_create_opts(const struct blk_driver *drv) { return drv->create_opts; }
const struct opt_desc *blk_driver_amend_opts(const struct blk_driver *drv) { return drv->amend_opts; }
bool blk_driver_can_create(const struct blk_driver *drv) { return drv->create != NULL; }
bool blk_driver_supports_backing(const struct blk_driver *drv) { return drv->supports_backing; }
bool blk_driver_is_format(const struct blk_driver *drv) { return drv->kind == BLK_KIND_FORMAT; }
bool blk_driver_can_compress(const struct blk_driver *drv) { return drv->supports_compressed_writes; }

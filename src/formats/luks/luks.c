/* The luks format: a LUKS1 volume (cryptsetup's "LUKS On-Disk Format
 * Specification" 1.2.1) whose payload is the guest disk, as qemu 7.2's
 * block/crypto.c exposes it: the virtual size is the file size minus the
 * payload offset, I/O is in 512-byte sectors encrypted with the payload
 * sector number as IV, resize moves the end of the file, amend adds and
 * erases key slots. The LUKS logic itself lives in src/crypto/luks.c.
 *
 * The passphrase comes from the secret named by the runtime option
 * key-secret (--image-opts, or create's -o key-secret). Opened with
 * BLK_O_NO_IO (info) the header is read without unlocking a key, as qemu
 * does, so info works without the secret. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/driver.h"
#include "crypto/luks.h"
#include "util/secret.h"

#define LUKS_MAX_IO (1u << 20)     /* bounce buffer per request chunk */

struct luks_state {
    struct luks *luks;
    uint64_t payload;            /* payload offset in the file, bytes */
    char *secret;                /* the key-secret id used to open, or NULL */
};

/* Header reads as qemu's bdrv_pread sees a file: zeros past its end. */
static int luks_read_cb(void *opaque, uint64_t off, void *buf, size_t len, struct err *err)
{
    struct bds *file = opaque;
    int64_t flen = blk_getlength(file);
    uint64_t have;
    int r;

    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Could not read encryption header");
    have = off >= (uint64_t)flen ? 0 : min_u64(len, (uint64_t)flen - off);
    if (have && (r = blk_pread(file, off, have, buf)) < 0)
        return err_set_errno(err, -r, "Could not read encryption header");
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}

static int luks_write_cb(void *opaque, uint64_t off, const void *buf, size_t len, struct err *err)
{
    int r = blk_pwrite(opaque, off, len, buf, 0);
    if (r < 0)
        return err_set_errno(err, -r, "Could not write encryption header");
    return 0;
}

static int luks_probe_fmt(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    return luks_probe(head, len) ? 100 : 0;
}

static int64_t luks_get_length(struct bds *bs)
{
    struct luks_state *s = bs->opaque;
    int64_t len = blk_getlength(bs->file);

    if (len < 0)
        return len;
    if (s->payload > (uint64_t)len)
        return -EIO;
    return len - (int64_t)s->payload;
}

static int luks_open_fmt(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct luks_state *s = bs->opaque;
    const char *secret_id = opts ? kvopts_get(opts, "key-secret") : NULL;
    const char *password = NULL;
    bool no_io = flags & BLK_O_NO_IO;
    int64_t len;

    if (!no_io) {
        if (!secret_id)
            return err_set(err, EINVAL, "Parameter 'key-secret' is required for cipher");
        if (!(password = secret_get(secret_id, NULL, err)))
            return -EINVAL;
    }
    s->luks = luks_open(luks_read_cb, bs->file, password, no_io, err);
    if (!s->luks)
        return -EIO;
    s->payload = luks_payload_offset(s->luks);
    s->secret = secret_id ? strdup(secret_id) : NULL;
    len = luks_get_length(bs);
    if (len < 0) {
        luks_free(s->luks);
        free(s->secret);
        s->luks = NULL;
        s->secret = NULL;
        return err_set_errno(err, (int)-len, "Could not refresh total sector count");
    }
    bs->total_size = (uint64_t)len;
    bs->request_alignment = LUKS_SECTOR_SIZE;
    bs->encrypted = true;
    return 0;
}

static void luks_close_fmt(struct bds *bs)
{
    struct luks_state *s = bs->opaque;
    luks_free(s->luks);
    free(s->secret);
    s->luks = NULL;
    s->secret = NULL;
}

static int luks_pread_fmt(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct luks_state *s = bs->opaque;
    uint8_t *p = buf;

    while (len) {
        size_t n = (size_t)min_u64(len, LUKS_MAX_IO);
        int r = blk_pread(bs->file, s->payload + off, n, p);
        if (r < 0)
            return r;
        if (luks_decrypt(s->luks, off, p, n, NULL) < 0)
            return -EIO;
        off += n;
        p += n;
        len -= n;
    }
    return 0;
}

static int luks_pwrite_fmt(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct luks_state *s = bs->opaque;
    const uint8_t *p = buf;
    uint8_t *bounce = malloc((size_t)min_u64(len, LUKS_MAX_IO));
    int r = 0;

    (void)flags;
    if (!bounce)
        return -ENOMEM;
    while (len) {
        size_t n = (size_t)min_u64(len, LUKS_MAX_IO);
        memcpy(bounce, p, n);
        if (luks_encrypt(s->luks, off, bounce, n, NULL) < 0) {
            r = -EIO;
            break;
        }
        if ((r = blk_pwrite(bs->file, s->payload + off, n, bounce, 0)) < 0)
            break;
        off += n;
        p += n;
        len -= n;
    }
    free(bounce);
    return r;
}

static int luks_flush_fmt(struct bds *bs)
{
    return blk_flush(bs->file);
}

static int luks_truncate_fmt(struct bds *bs, uint64_t size, bool exact, enum blk_prealloc prealloc,
                             struct err *err)
{
    struct luks_state *s = bs->opaque;
    uint64_t end;
    int r;

    if (size > INT64_MAX || ckd_add(&end, size, s->payload) || end > INT64_MAX)
        return err_set(err, EFBIG, "The requested file size is too large");
    r = blk_truncate(bs->file, end, exact, prealloc, err);
    if (r == 0)
        bs->total_size = size;
    return r;
}

static int luks_get_info_fmt(struct bds *bs, struct blk_info *bi)
{
    struct blk_info sub = { 0 };
    int r = blk_get_info(bs->file, &sub);
    if (r < 0)
        return r;
    bi->cluster_size = sub.cluster_size;
    bi->has_dirty_flag = true;
    return 0;
}

static json_t *luks_specific_info_fmt(struct bds *bs, struct err *err)
{
    struct luks_state *s = bs->opaque;
    (void)err;
    return luks_info_json(s->luks);
}

/* --- create --- */

struct create_ctx {
    struct bds *file;
    uint64_t size;
    enum blk_prealloc prealloc;
};

static int create_init_cb(void *opaque, uint64_t header_len, struct err *err)
{
    struct create_ctx *c = opaque;
    uint64_t end;

    if (c->size > INT64_MAX || ckd_add(&end, c->size, header_len) || end > INT64_MAX)
        return err_set(err, EFBIG, "The requested file size is too large");
    return blk_truncate(c->file, end, false, c->prealloc, err);
}

static int create_write_cb(void *opaque, uint64_t off, const void *buf, size_t len, struct err *err)
{
    struct create_ctx *c = opaque;
    return luks_write_cb(c->file, off, buf, len, err);
}

static int luks_create_fmt(const char *filename, struct kvopts *opts, struct err *err)
{
    struct luks_create_opts lo;
    struct create_ctx c = { NULL, 0, BLK_PREALLOC_OFF };
    struct luks *l;
    const char *pa;
    int r;

    /* qemu: size, preallocation, then the crypto options, then the file. */
    if ((r = kvopts_get_size(opts, "size", 0, &c.size, err)) < 0)
        return r;
    if ((pa = kvopts_get(opts, "preallocation"))) {
        if (!strcmp(pa, "off") || !strcmp(pa, "metadata")) {
            c.prealloc = BLK_PREALLOC_OFF;
        } else if (!strcmp(pa, "falloc")) {
            c.prealloc = BLK_PREALLOC_FALLOC;
        } else if (!strcmp(pa, "full")) {
            c.prealloc = BLK_PREALLOC_FULL;
        } else {
            return err_set(err, EINVAL, "Parameter 'preallocation' does not accept value '%s'",
                           pa);
        }
    }
    if ((r = luks_create_opts_parse(opts, "", &lo, err)) < 0)
        return r;
    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    c.file = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!c.file)
        return -EIO;
    l = luks_create(&lo, NULL, create_init_cb, create_write_cb, &c, err);
    if (!l) {
        r = -EIO;
        /* qemu deletes the half-made file. */
        blk_close(c.file);
        unlink(filename);
        return r;
    }
    luks_free(l);
    /* As qemu, which flushes at close and drops the error: a failing
     * flush does not fail the create. */
    blk_flush(c.file);
    blk_close(c.file);
    return 0;
}

static int luks_measure_fmt(struct kvopts *opts, struct bds *in, uint64_t size,
                            struct blk_measure *out, struct err *err)
{
    struct luks_create_opts lo;
    uint64_t hdr;
    int r;

    if (in) {
        int64_t len = blk_getlength(in);
        if (len < 0)
            return err_set_errno(err, (int)-len, "Unable to get image virtual_size");
        size = (uint64_t)len;
    }
    if ((r = luks_create_opts_parse(opts, "", &lo, err)) < 0)
        return r;
    if ((r = luks_payload_size(&lo, NULL, &hdr, err)) < 0)
        return r;
    out->required = hdr + size;
    out->fully_allocated = hdr + size;
    return 0;
}

/* --- amend --- */

static int luks_amend_fmt(struct bds *bs, struct kvopts *opts, bool force, struct err *err)
{
    struct luks_state *s = bs->opaque;
    struct luks_amend_opts ao;
    const char *state = kvopts_get(opts, "state");
    uint64_t v;
    int r;

    memset(&ao, 0, sizeof(ao));
    if (!state)
        return err_set(err, EINVAL, "Parameter 'state' is missing");
    if (!strcmp(state, "active"))
        ao.active = true;
    else if (strcmp(state, "inactive"))
        return err_set(err, EINVAL, "Parameter 'state' does not accept value '%s'", state);
    if (kvopts_has(opts, "keyslot")) {
        if ((r = kvopts_get_number(opts, "keyslot", 0, &v, err)) < 0)
            return r;
        ao.has_keyslot = true;
        ao.keyslot = v > INT64_MAX ? -1 : (int64_t)v;
    }
    ao.new_secret = kvopts_get(opts, "new-secret");
    ao.old_secret = kvopts_get(opts, "old-secret");
    if (kvopts_has(opts, "iter-time")) {
        if ((r = kvopts_get_number(opts, "iter-time", 0, &ao.iter_time, err)) < 0)
            return r;
        ao.has_iter_time = true;
    }
    return luks_amend(s->luks, luks_read_cb, luks_write_cb, bs->file, &ao, s->secret, force,
                      err);
}

static const struct opt_desc luks_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "key-secret", OPT_STRING, "ID of the secret that provides the keyslot passphrase", NULL },
    { "cipher-alg", OPT_STRING, "Name of encryption cipher algorithm", NULL },
    { "cipher-mode", OPT_STRING, "Name of encryption cipher mode", NULL },
    { "ivgen-alg", OPT_STRING, "Name of IV generator algorithm", NULL },
    { "ivgen-hash-alg", OPT_STRING, "Name of IV generator hash algorithm", NULL },
    { "hash-alg", OPT_STRING, "Name of encryption hash algorithm", NULL },
    { "iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL },
    { NULL, 0, NULL, NULL },
};

static const struct opt_desc luks_amend_opts[] = {
    { "state", OPT_STRING, "Select new state of affected keyslots (active/inactive)", NULL },
    { "keyslot", OPT_NUMBER, "Select a single keyslot to modify explicitly", NULL },
    { "old-secret", OPT_STRING, "Select all keyslots that match this password", NULL },
    { "new-secret", OPT_STRING, "New secret to set in the matching keyslots. Empty string to erase",
      NULL },
    { "iter-time", OPT_NUMBER, "Time to spend in PBKDF in milliseconds", NULL },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver luks_driver = {
    .name = "luks",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct luks_state),
    .thread_model = BLK_THREAD_PARALLEL,
    .create_opts = luks_create_opts,
    .amend_opts = luks_amend_opts,
    .probe = luks_probe_fmt,
    .open = luks_open_fmt,
    .close = luks_close_fmt,
    .create = luks_create_fmt,
    .pread = luks_pread_fmt,
    .pwrite = luks_pwrite_fmt,
    .flush = luks_flush_fmt,
    .get_length = luks_get_length,
    .truncate = luks_truncate_fmt,
    .get_info = luks_get_info_fmt,
    .specific_info = luks_specific_info_fmt,
    .measure = luks_measure_fmt,
    .amend = luks_amend_fmt,
};

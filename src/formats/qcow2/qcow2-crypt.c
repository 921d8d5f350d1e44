/* qcow2 encryption (qcow2.txt "Header" crypt_method, "Full disk encryption
 * header pointer"): opening, creating, measuring, describing and amending
 * encrypted images, and the data-cluster cipher used by the read and write
 * paths.
 *
 * Two methods exist, as in qemu 7.2:
 *  - crypt_method 1, legacy AES: AES-128-CBC keyed with the secret's first
 *    16 bytes (zero padded), IV = plain64 of the *guest* sector number;
 *  - crypt_method 2, LUKS: a LUKS1 volume whose header and key material
 *    live in clusters named by the 0x0537be77 extension (key material
 *    offsets relative to that area; the LUKS payload offset is ignored),
 *    IV = the *host* sector number of the data. The LUKS logic itself is
 *    src/crypto/luks.c, reached through read/write callbacks.
 * Only normal data clusters are encrypted; zero clusters read as zeros and
 * compressed clusters are stored in the clear (qemu does the same). All I/O
 * on encrypted images is in 512-byte sectors (request_alignment).
 *
 * Options are qemu's: encrypt.format (aes, luks; "qcow" is qemu's QAPI name
 * for aes) and encrypt.key-secret at open; encrypt.* creation options; the
 * encrypt.state/keyslot/old-secret/new-secret/iter-time amend options. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/luks.h"
#include "formats/qcow2/qcow2.h"
#include "util/secret.h"

#define CRYPT_SECTOR 512u
#define CRYPT_CHUNK (1u << 20)     /* bounce buffer per encrypted write piece */
#define AES_KEY_LEN 16

struct qcow2_crypt {
    uint32_t method;
    struct luks *luks;                 /* LUKS: header (and key unless no_io) */
    struct crypto_cipher *aes;         /* AES: NULL when opened without I/O */
    struct crypto_ivgen *ivgen;
    char *secret;                      /* key-secret id used to open, or NULL */
};

/* --- the LUKS header area --- */

static int hdr_read_cb(void *opaque, uint64_t off, void *buf, size_t len, struct err *err)
{
    struct bds *bs = opaque;
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t end, pos, have = 0;
    int64_t flen;
    int r;

    if (ckd_add(&end, off, (uint64_t)len) || end > s->crypto_hdr_len)
        return err_set(err, EINVAL, "Request for data outside of extension header");
    if (ckd_add(&pos, s->crypto_hdr_offset, off) || pos > INT64_MAX)
        return err_set(err, EINVAL, "Request for data outside of extension header");
    flen = blk_getlength(bs->file);
    if (flen < 0)
        return err_set_errno(err, (int)-flen, "Could not read encryption header");
    /* Like a read of the host file past its end: zeros. */
    if (pos < (uint64_t)flen)
        have = min_u64(len, (uint64_t)flen - pos);
    if (have && (r = blk_pread(bs->file, pos, have, buf)) < 0)
        return err_set_errno(err, -r, "Could not read encryption header");
    memset((uint8_t *)buf + have, 0, len - have);
    return 0;
}

static int hdr_write_cb(void *opaque, uint64_t off, const void *buf, size_t len, struct err *err)
{
    struct bds *bs = opaque;
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t end;
    int r;

    if (ckd_add(&end, off, (uint64_t)len) || end > s->crypto_hdr_len)
        return err_set(err, EINVAL, "Request for data outside of extension header");
    r = blk_pwrite(bs->file, s->crypto_hdr_offset + off, len, buf, 0);
    if (r < 0)   /* qemu's wording, "read" included */
        return err_set_errno(err, -r, "Could not read encryption header");
    return 0;
}

/* Creation: allocate the clusters for header_len bytes and zero them, so
 * the unused key slots have predictable contents. */
static int hdr_init_cb(void *opaque, uint64_t header_len, struct err *err)
{
    struct bds *bs = opaque;
    struct qcow2_state *s = qcow2_st(bs);
    int64_t off;
    int r;

    off = qcow2_alloc_clusters(bs, header_len);
    if (off < 0)
        return err_set_errno(err, (int)-off, "Cannot allocate cluster for LUKS header size %llu",
                             (unsigned long long)header_len);
    s->crypto_hdr_offset = (uint64_t)off;
    s->crypto_hdr_len = header_len;
    r = blk_pwrite_zeroes(bs->file, (uint64_t)off,
                          qcow2_size_to_clusters(s, header_len) * s->cluster_size, 0);
    if (r < 0)
        return err_set_errno(err, -r, "Could not zero fill encryption header");
    return 0;
}

/* --- open / close --- */

void qcow2_crypt_close(struct qcow2_state *s)
{
    struct qcow2_crypt *c = s->crypt;

    if (!c)
        return;
    luks_free(c->luks);
    crypto_cipher_free(c->aes);
    crypto_ivgen_free(c->ivgen);
    free(c->secret);
    free(c);
    s->crypt = NULL;
}

static const char *const method_names[] = { "none", "aes", "luks" };

/* qemu's runtime option checks: the format must agree with the header and
 * only format and key-secret exist under "encrypt.". */
static int check_open_opts(const struct qcow2_state *s, const struct kvopts *opts,
                           struct err *err)
{
    const char *fmt = opts ? kvopts_get(opts, "encrypt.format") : NULL;

    if (s->crypt_method == QCOW2_CRYPT_NONE) {
        if (fmt)
            return err_set(err, EINVAL,
                           "No encryption in image header, but options specified format '%s'", fmt);
        return 0;
    }
    if (fmt && strcmp(fmt, method_names[s->crypt_method]))
        return err_set(err, EINVAL, "Header reported '%s' encryption format but options specify '%s'",
                       method_names[s->crypt_method], fmt);
    for (size_t i = 0; opts && i < opts->n; i++) {
        const char *k = opts->v[i].key;
        if (strncmp(k, "encrypt.", 8) || !strcmp(k + 8, "format") || !strcmp(k + 8, "key-secret"))
            continue;
        return err_set(err, EINVAL, "Parameter '%s' is unexpected", k + 8);
    }
    return 0;
}

/* The legacy AES key: the passphrase's first 16 bytes, zero padded. */
static int aes_setup(struct qcow2_crypt *c, const char *password, struct err *err)
{
    uint8_t key[AES_KEY_LEN];
    size_t n = strlen(password);

    memset(key, 0, sizeof(key));
    memcpy(key, password, n < sizeof(key) ? n : sizeof(key));
    c->ivgen = crypto_ivgen_new(CRYPTO_IVGEN_PLAIN64, CRYPTO_CIPHER_AES_128, CRYPTO_HASH_SHA256,
                                NULL, 0, err);
    if (c->ivgen)
        c->aes = crypto_cipher_new(CRYPTO_CIPHER_AES_128, CRYPTO_MODE_CBC, key, sizeof(key), err);
    memset(key, 0, sizeof(key));
    return c->aes ? 0 : -ENOTSUP;
}

int qcow2_crypt_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    const char *secret = opts ? kvopts_get(opts, "encrypt.key-secret") : NULL;
    const char *password = NULL;
    bool no_io = flags & BLK_O_NO_IO;
    struct qcow2_crypt *c;
    int r;

    if ((r = check_open_opts(s, opts, err)) < 0)
        return r;
    if (s->crypt_method == QCOW2_CRYPT_NONE)
        return 0;
    if (s->crypt_method == QCOW2_CRYPT_LUKS && !s->crypto_hdr_offset) {
        if (no_io)
            return 0;
        return err_set(err, EINVAL, "Missing CRYPTO header for crypt method %u", s->crypt_method);
    }
    if (!no_io) {
        if (!secret)
            return err_set(err, EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
        if (!(password = secret_get(secret, NULL, err)))
            return -EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (!c || (secret && !(c->secret = strdup(secret)))) {
        free(c);
        return err_set(err, ENOMEM, "Out of memory");
    }
    c->method = s->crypt_method;
    s->crypt = c;
    if (c->method == QCOW2_CRYPT_LUKS) {
        c->luks = luks_open(hdr_read_cb, bs, password, no_io, err);
        r = c->luks ? 0 : -EINVAL;
    } else {
        r = no_io ? 0 : aes_setup(c, password, err);
    }
    if (r < 0) {
        qcow2_crypt_close(s);
        return r;
    }
    return 0;
}

/* --- data clusters --- */

static int crypt_buf(struct bds *bs, uint64_t host, uint64_t guest, uint8_t *buf, size_t len,
                     bool encrypt)
{
    struct qcow2_crypt *c = qcow2_st(bs)->crypt;

    if (!c || len % CRYPT_SECTOR || host % CRYPT_SECTOR || guest % CRYPT_SECTOR)
        return -EIO;
    if (c->luks) {
        /* LUKS sectors are numbered by host offset. */
        int r = encrypt ? luks_encrypt(c->luks, host, buf, len, NULL)
                        : luks_decrypt(c->luks, host, buf, len, NULL);
        return r < 0 ? -EIO : 0;
    }
    if (!c->aes)
        return -EIO;
    /* Legacy AES sectors are numbered by guest offset. */
    if (crypto_sectors_crypt(c->aes, c->ivgen, encrypt, guest / CRYPT_SECTOR, CRYPT_SECTOR, buf,
                             len, NULL) < 0)
        return -EIO;
    return 0;
}

int qcow2_crypt_pread(struct bds *bs, uint64_t host, uint64_t guest, uint64_t len, uint8_t *buf)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r = blk_pread(s->data_file, host, len, buf);

    if (r < 0 || !bs->encrypted)
        return r;
    while (len) {
        size_t n = (size_t)min_u64(len, CRYPT_CHUNK);
        if ((r = crypt_buf(bs, host, guest, buf, n, false)) < 0)
            return r;
        host += n;
        guest += n;
        buf += n;
        len -= n;
    }
    return 0;
}

int qcow2_crypt_pwrite(struct bds *bs, uint64_t host, uint64_t guest, uint64_t len,
                       const uint8_t *buf)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *bounce;
    int r = 0;

    if (!bs->encrypted)
        return blk_pwrite(s->data_file, host, len, buf, 0);
    bounce = malloc((size_t)min_u64(len, CRYPT_CHUNK));
    if (!bounce)
        return -ENOMEM;
    while (len) {
        size_t n = (size_t)min_u64(len, CRYPT_CHUNK);
        memcpy(bounce, buf, n);
        if ((r = crypt_buf(bs, host, guest, bounce, n, true)) < 0)
            break;
        if ((r = blk_pwrite(s->data_file, host, n, bounce, 0)) < 0)
            break;
        host += n;
        guest += n;
        buf += n;
        len -= n;
    }
    free(bounce);
    return r;
}

/* --- info --- */

json_t *qcow2_crypt_info(struct bds *bs)
{
    struct qcow2_crypt *c = qcow2_st(bs)->crypt;
    json_t *o, *l;
    const char *k;
    json_t *v;

    if (!c)
        return NULL;
    o = json_object();
    /* ImageInfoSpecificQCow2Encryption: the discriminator, then the
     * QCryptoBlockInfoLUKS members. */
    json_object_set_new(o, "format", json_string(method_names[c->method]));
    if (c->luks) {
        l = luks_info_json(c->luks);
        json_object_foreach(l, k, v)
            json_object_set(o, k, v);
        json_decref(l);
    }
    return o;
}

/* --- create --- */

/* The "encrypt." options without their prefix: qemu's visitor names the
 * LUKS enum members that way in its messages. */
static void luks_sub_opts(const struct kvopts *o, struct kvopts *sub)
{
    kvopts_init(sub);
    for (size_t i = 0; i < o->n; i++)
        if (!strncmp(o->v[i].key, "encrypt.", 8))
            kvopts_set(sub, o->v[i].key + 8, o->v[i].val);
}

/* Options in the order qemu's QAPI visitor meets them, with its messages.
 * The legacy "encryption" bool maps to format aes ("off" drops it). */
int qcow2_crypt_create_parse(const struct kvopts *o, struct qcow2_crypt_create *out,
                             struct err *err)
{
    const char *fmt = kvopts_get(o, "encrypt.format");
    const char *legacy = kvopts_get(o, "encryption");
    bool any = false;
    int r;

    memset(out, 0, sizeof(*out));
    out->opts = o;
    if (legacy && !strcmp(legacy, "off"))
        legacy = NULL;
    else if (legacy && !strcmp(legacy, "on"))
        legacy = "qcow";
    if (legacy && fmt)
        return err_set(err, EINVAL,
                       "'encrypt.format' and its alias 'encryption' can't be used at the same time");
    if (legacy)
        fmt = legacy;
    for (size_t i = 0; i < o->n; i++)
        any |= !strncmp(o->v[i].key, "encrypt.", 8);
    if (!fmt && !any)
        return 0;
    if (!fmt)
        return err_set(err, EINVAL, "Parameter 'encrypt.format' is missing");
    if (!strcmp(fmt, "aes") || !strcmp(fmt, "qcow")) {
        out->method = QCOW2_CRYPT_AES;
        for (size_t i = 0; i < o->n; i++) {
            const char *k = o->v[i].key;
            if (!strncmp(k, "encrypt.", 8) && strcmp(k + 8, "format") &&
                strcmp(k + 8, "key-secret"))
                return err_set(err, EINVAL, "Parameter '%s' is unexpected", k);
        }
    } else if (!strcmp(fmt, "luks")) {
        struct luks_create_opts lo;
        struct kvopts sub;
        out->method = QCOW2_CRYPT_LUKS;
        luks_sub_opts(o, &sub);
        r = luks_create_opts_parse(&sub, "", &lo, err);
        kvopts_release(&sub);
        if (r < 0)
            return r;
    } else {
        return err_set(err, EINVAL, "Parameter 'format' does not accept value '%s'", fmt);
    }
    out->key_secret = kvopts_get(o, "encrypt.key-secret");
    return 0;
}

int qcow2_crypt_create(struct bds *bs, const struct qcow2_crypt_create *p, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if (p->method == QCOW2_CRYPT_NONE)
        return 0;
    if (p->method == QCOW2_CRYPT_AES) {
        /* No header: only the secret is checked. */
        if (!p->key_secret)
            return err_set(err, EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
        if (!secret_get(p->key_secret, NULL, err))
            return -EINVAL;
        s->crypt_method = QCOW2_CRYPT_AES;
    } else {
        struct luks_create_opts lo;
        struct kvopts sub;
        struct luks *l = NULL;
        luks_sub_opts(p->opts, &sub);
        s->crypt_method = QCOW2_CRYPT_LUKS;
        if (luks_create_opts_parse(&sub, "", &lo, err) == 0)
            l = luks_create(&lo, "encrypt.", hdr_init_cb, hdr_write_cb, bs, err);
        kvopts_release(&sub);
        if (!l) {
            s->crypt_method = QCOW2_CRYPT_NONE;
            return -EINVAL;
        }
        luks_free(l);
    }
    /* The header cluster refcounts reach the disk before the header
     * extension that points at them. */
    r = qcow2_meta_flush(bs);
    if (r == 0)
        r = qcow2_update_header(bs);
    if (r < 0)
        return err_set_errno(err, -r, "Could not write encryption header");
    bs->encrypted = true;
    return 0;
}

int qcow2_crypt_measure(const struct kvopts *opts, uint64_t cluster_size, uint64_t *payload,
                        struct err *err)
{
    const char *fmt = kvopts_get(opts, "encrypt.format");
    struct luks_create_opts lo;
    struct kvopts sub;
    uint64_t len;
    int r;

    *payload = 0;
    if (!fmt || strcmp(fmt, "luks"))
        return 0;
    luks_sub_opts(opts, &sub);
    r = luks_create_opts_parse(&sub, "", &lo, err);
    if (r == 0)
        r = luks_payload_size(&lo, "encrypt.", &len, err);
    kvopts_release(&sub);
    if (r < 0)
        return r;
    *payload = align_up_u64(len, cluster_size);
    return 0;
}

/* --- amend --- */

int qcow2_crypt_amend(struct bds *bs, struct kvopts *opts, bool force, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_crypt *c = s->crypt;
    struct luks_amend_opts ao;
    const char *state;
    bool any = false;
    uint64_t v;
    int r;

    for (size_t i = 0; i < opts->n; i++)
        any |= !strncmp(opts->v[i].key, "encrypt.", 8);
    if (!any)
        return 0;
    if (!c)
        return err_set(err, EINVAL, "Can't amend encryption options - encryption not present");
    if (c->method != QCOW2_CRYPT_LUKS || !c->luks)
        return err_set(err, ENOTSUP, "Only LUKS encryption options can be amended");

    memset(&ao, 0, sizeof(ao));
    state = kvopts_get(opts, "encrypt.state");
    if (!state)
        return err_set(err, EINVAL, "Parameter 'state' is missing");
    if (!strcmp(state, "active"))
        ao.active = true;
    else if (strcmp(state, "inactive"))
        return err_set(err, EINVAL, "Parameter 'state' does not accept value '%s'", state);
    if (kvopts_has(opts, "encrypt.keyslot")) {
        if ((r = kvopts_get_number(opts, "encrypt.keyslot", 0, &v, err)) < 0)
            return r;
        ao.has_keyslot = true;
        ao.keyslot = v > INT64_MAX ? -1 : (int64_t)v;
    }
    ao.new_secret = kvopts_get(opts, "encrypt.new-secret");
    ao.old_secret = kvopts_get(opts, "encrypt.old-secret");
    if (kvopts_has(opts, "encrypt.iter-time")) {
        if ((r = kvopts_get_number(opts, "encrypt.iter-time", 0, &ao.iter_time, err)) < 0)
            return r;
        ao.has_iter_time = true;
    }
    r = luks_amend(c->luks, hdr_read_cb, hdr_write_cb, bs, &ao, c->secret, force, err);
    if (r == 0)
        r = blk_flush(bs->file) < 0 ? err_set(err, EIO, "Could not flush the image") : 0;
    return r;
}

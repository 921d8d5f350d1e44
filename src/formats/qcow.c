/* qcow (version 1) driver: probe, open, reads (with zlib raw-deflate
 * compressed clusters), writes (plain and BLK_WRITE_COMPRESSED), block
 * status, create, make_empty, info. qcow has no spec document; the layout
 * is that of qemu 7.2's block/qcow.c: a 48-byte big-endian header, a
 * one-level L1 of L2 table offsets, L2 entries with bit 63 marking a
 * compressed cluster whose byte count sits in bits 63-cluster_bits..62.
 *
 * There are no refcounts: new L2 tables and clusters are appended at the
 * (cluster-aligned) end of the file, compressed clusters at its
 * sector-aligned end, in qemu's order, so the same writes give the same
 * file. AES-encrypted images (crypt_method 1): AES-128-CBC keyed with the
 * first 16 bytes of the encrypt.key-secret passphrase (zero padded), IV =
 * plain64 of the guest sector; compressed clusters stay in the clear, and
 * the unwritten sectors of a fresh cluster are written as encrypted zeros,
 * as qemu does. Without the key (BLK_O_NO_IO) only metadata is read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "block/driver.h"
#include "crypto/crypto.h"
#include "util/deflate.h"
#include "util/secret.h"

#define QCOW_MAGIC 0x514649fbu          /* "QFI\xfb" */
#define QCOW_VERSION 1
#define QCOW_HEADER_LEN 48
#define QCOW_CRYPT_NONE 0
#define QCOW_CRYPT_AES 1
#define QCOW_OFLAG_COMPRESSED (1ULL << 63)
#define QCOW_L2_CACHE_SIZE 16
#define QCOW_MAX_BACKING_NAME 1023
/* An L1 table is read whole; one larger than the file is refused past
 * this size (qemu reads zeros past the end; we only do so for small ones). */
#define QCOW_L1_SLACK (32u << 20)

enum {
    QCH_MAGIC = 0, QCH_VERSION = 4, QCH_BACKING_OFFSET = 8, QCH_BACKING_SIZE = 16,
    QCH_MTIME = 20, QCH_SIZE = 24, QCH_CLUSTER_BITS = 32, QCH_L2_BITS = 33,
    QCH_CRYPT_METHOD = 36, QCH_L1_OFFSET = 40,
};

struct qcow_state {
    uint32_t cluster_bits, cluster_size, l2_bits, l2_size;
    uint32_t l1_size;
    uint64_t cluster_offset_mask;
    uint64_t l1_table_offset;
    uint64_t *l1;                      /* host order */
    uint8_t *l2_cache;                 /* 16 tables, big-endian as on disk */
    uint64_t l2_cache_offsets[QCOW_L2_CACHE_SIZE];
    uint32_t l2_cache_counts[QCOW_L2_CACHE_SIZE];
    uint8_t *cluster_cache;            /* last decompressed cluster */
    uint8_t *cluster_data;
    uint64_t cluster_cache_offset;
    uint32_t crypt_method;
    struct crypto_cipher *aes;         /* NULL unless encrypted and keyed */
    struct crypto_ivgen *ivgen;
};

static struct qcow_state *qst(struct bds *bs) { return bs->opaque; }

static int qcow_probe(const uint8_t *head, size_t len, const char *filename)
{
    (void)filename;
    if (len >= QCOW_HEADER_LEN && get_be32(head + QCH_MAGIC) == QCOW_MAGIC &&
        get_be32(head + QCH_VERSION) == QCOW_VERSION)
        return 100;
    return 0;
}

static void qcow_free(struct qcow_state *s)
{
    free(s->l1);
    free(s->l2_cache);
    free(s->cluster_cache);
    free(s->cluster_data);
    s->l1 = NULL;
    s->l2_cache = s->cluster_cache = s->cluster_data = NULL;
    crypto_cipher_free(s->aes);
    crypto_ivgen_free(s->ivgen);
    s->aes = NULL;
    s->ivgen = NULL;
}

/* Encrypt or decrypt len bytes (whole sectors) of guest offset off. */
static int qcow_crypt(struct qcow_state *s, uint64_t off, uint8_t *buf, uint64_t len, bool enc)
{
    if (!s->aes || (off | len) % 512)
        return -EIO;
    if (crypto_sectors_crypt(s->aes, s->ivgen, enc, off / 512, 512, buf, (size_t)len, NULL) < 0)
        return -EIO;
    return 0;
}

/* qemu's runtime options (encrypt.format, encrypt.key-secret) and the key:
 * the passphrase's first 16 bytes, zero padded. */
static int qcow_crypt_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct qcow_state *s = qst(bs);
    const char *fmt = opts ? kvopts_get(opts, "encrypt.format") : NULL;
    const char *secret = opts ? kvopts_get(opts, "encrypt.key-secret") : NULL;
    const char *password;
    uint8_t key[16];
    size_t n;

    if (!s->crypt_method) {
        if (fmt)
            return err_set(err, EINVAL,
                           "No encryption in image header, but options specified format '%s'", fmt);
        return 0;
    }
    if (s->crypt_method != QCOW_CRYPT_AES)
        return err_set(err, EINVAL, "invalid encryption method in qcow header");
    if (fmt && strcmp(fmt, "aes"))
        return err_set(err, EINVAL,
                       "Header reported 'aes' encryption format but options specify '%s'", fmt);
    for (size_t i = 0; opts && i < opts->n; i++) {
        const char *k = opts->v[i].key;
        if (!strncmp(k, "encrypt.", 8) && strcmp(k + 8, "format") && strcmp(k + 8, "key-secret"))
            return err_set(err, EINVAL, "Parameter '%s' is unexpected", k + 8);
    }
    bs->encrypted = true;
    if (flags & BLK_O_NO_IO)
        return 0;
    if (!secret)
        return err_set(err, EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    if (!(password = secret_get(secret, NULL, err)))
        return -EINVAL;
    n = strlen(password);
    memset(key, 0, sizeof(key));
    memcpy(key, password, n < sizeof(key) ? n : sizeof(key));
    s->ivgen = crypto_ivgen_new(CRYPTO_IVGEN_PLAIN64, CRYPTO_CIPHER_AES_128, CRYPTO_HASH_SHA256,
                                NULL, 0, err);
    if (s->ivgen)
        s->aes = crypto_cipher_new(CRYPTO_CIPHER_AES_128, CRYPTO_MODE_CBC, key, sizeof(key), err);
    memset(key, 0, sizeof(key));
    return s->aes ? 0 : -ENOTSUP;
}

static int qcow_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct qcow_state *s = qst(bs);
    uint8_t h[QCOW_HEADER_LEN];
    uint64_t size, backing_off, l1_bytes;
    uint32_t version, backing_len, shift;
    int64_t flen;
    int r;

    /* qemu's qcow_open fails its reads without a message of its own: the
     * open reports "Could not open '<file>': <strerror>". */
    if ((r = blk_pread(bs->file, 0, sizeof(h), h)) < 0)
        return r;
    version = get_be32(h + QCH_VERSION);
    size = get_be64(h + QCH_SIZE);
    s->cluster_bits = h[QCH_CLUSTER_BITS];
    s->l2_bits = h[QCH_L2_BITS];
    s->crypt_method = get_be32(h + QCH_CRYPT_METHOD);
    backing_off = get_be64(h + QCH_BACKING_OFFSET);
    backing_len = get_be32(h + QCH_BACKING_SIZE);
    s->l1_table_offset = get_be64(h + QCH_L1_OFFSET);

    if (get_be32(h + QCH_MAGIC) != QCOW_MAGIC)
        return err_set(err, EINVAL, "Image not in qcow format");
    if (version != QCOW_VERSION) {
        if (version == 2 || version == 3)
            return err_set(err, ENOTSUP, "qcow (v%d) does not support qcow version %u\n"
                           "Try the 'qcow2' driver instead.", QCOW_VERSION, version);
        return err_set(err, ENOTSUP, "qcow (v%d) does not support qcow version %u",
                       QCOW_VERSION, version);
    }
    if (size <= 1)
        return err_set(err, EINVAL, "Image size is too small (must be at least 2 bytes)");
    if (s->cluster_bits < 9 || s->cluster_bits > 16)
        return err_set(err, EINVAL, "Cluster size must be between 512 and 64k");
    if (s->l2_bits < 9 - 3 || s->l2_bits > 16 - 3)
        return err_set(err, EINVAL, "L2 table size must be between 512 and 64k");
    if ((r = qcow_crypt_open(bs, opts, flags, err)) < 0)
        goto fail;
    s->cluster_size = 1u << s->cluster_bits;
    s->l2_size = 1u << s->l2_bits;
    s->cluster_offset_mask = (1ULL << (63 - s->cluster_bits)) - 1;
    shift = s->cluster_bits + s->l2_bits;
    /* From here on the cipher is set up: errors go through fail. */
    if (size > UINT64_MAX - (1ULL << shift)) {
        r = err_set(err, EINVAL, "Image too large");
        goto fail;
    }
    l1_bytes = ((size + (1ULL << shift) - 1) >> shift) * 8;
    if (l1_bytes / 8 > INT32_MAX / 8) {
        r = err_set(err, EINVAL, "Image too large");
        goto fail;
    }
    s->l1_size = (uint32_t)(l1_bytes / 8);

    flen = blk_getlength(bs->file);
    if (flen < 0) {
        r = err_set_errno(err, (int)-flen, "Could not get the file length");
        goto fail;
    }
    if (l1_bytes > QCOW_L1_SLACK && (s->l1_table_offset > (uint64_t)flen ||
                                     l1_bytes > (uint64_t)flen - s->l1_table_offset)) {
        r = err_set(err, ENOMEM, "Could not allocate memory for L1 table");
        goto fail;
    }
    s->l1 = malloc((size_t)l1_bytes + 8);
    s->l2_cache = malloc((size_t)s->l2_size * 8 * QCOW_L2_CACHE_SIZE);
    s->cluster_cache = malloc(s->cluster_size);
    s->cluster_data = malloc(s->cluster_size);
    if (!s->l1 || !s->l2_cache || !s->cluster_cache || !s->cluster_data) {
        r = err_set(err, ENOMEM, "Could not allocate memory for L1 table");
        goto fail;
    }
    if ((r = blk_pread(bs->file, s->l1_table_offset, l1_bytes, s->l1)) < 0)
        goto fail;
    for (uint32_t i = 0; i < s->l1_size; i++)
        s->l1[i] = get_be64(&s->l1[i]);
    memset(s->l2_cache_offsets, 0, sizeof(s->l2_cache_offsets));
    memset(s->l2_cache_counts, 0, sizeof(s->l2_cache_counts));
    s->cluster_cache_offset = UINT64_MAX;

    if (backing_off != 0) {
        if (backing_len > QCOW_MAX_BACKING_NAME) {
            r = err_set(err, EINVAL, "Backing file name too long");
            goto fail;
        }
        char *name = malloc(backing_len + 1);
        if (!name) {
            r = err_set(err, ENOMEM, "Backing file name too long");
            goto fail;
        }
        if ((r = blk_pread(bs->file, backing_off, backing_len, name)) < 0) {
            free(name);
            goto fail;
        }
        name[backing_len] = '\0';
        free(bs->backing_file);
        bs->backing_file = name;
    }
    bs->total_size = size / 512 * 512;
    bs->request_alignment = 512;
    return 0;

fail:
    qcow_free(s);
    return r;
}

static void qcow_close(struct bds *bs)
{
    qcow_free(qst(bs));
}

/* The L2 table at l2_offset in the cache (loaded, or zeroed and written
 * when fresh), like qemu's least-used replacement. */
static uint8_t *l2_load(struct bds *bs, uint64_t l2_offset, bool fresh, int *ret)
{
    struct qcow_state *s = qst(bs);
    uint64_t bytes = (uint64_t)s->l2_size * 8;
    uint32_t min_count = UINT32_MAX;
    int min_index = 0;
    uint8_t *t;

    for (int i = 0; i < QCOW_L2_CACHE_SIZE; i++) {
        if (s->l2_cache_offsets[i] == l2_offset) {
            if (++s->l2_cache_counts[i] == UINT32_MAX)
                for (int j = 0; j < QCOW_L2_CACHE_SIZE; j++)
                    s->l2_cache_counts[j] >>= 1;
            return s->l2_cache + (size_t)i * bytes;
        }
    }
    for (int i = 0; i < QCOW_L2_CACHE_SIZE; i++) {
        if (s->l2_cache_counts[i] < min_count) {
            min_count = s->l2_cache_counts[i];
            min_index = i;
        }
    }
    t = s->l2_cache + (size_t)min_index * bytes;
    s->l2_cache_offsets[min_index] = 0;
    s->l2_cache_counts[min_index] = 0;
    if (fresh) {
        memset(t, 0, (size_t)bytes);
        *ret = blk_pwrite(bs->file, l2_offset, bytes, t, 0);
    } else {
        *ret = blk_pread(bs->file, l2_offset, bytes, t);
    }
    if (*ret < 0)
        return NULL;
    s->l2_cache_offsets[min_index] = l2_offset;
    s->l2_cache_counts[min_index] = 1;
    return t;
}

static int decompress_cluster(struct bds *bs, uint64_t entry)
{
    struct qcow_state *s = qst(bs);
    uint64_t coffset = entry & s->cluster_offset_mask;
    uint32_t csize;

    if (s->cluster_cache_offset == coffset)
        return 0;
    csize = (uint32_t)(entry >> (63 - s->cluster_bits)) & (s->cluster_size - 1);
    if (blk_pread(bs->file, coffset, csize, s->cluster_data) < 0)
        return -EIO;
    if (inflate_window_exact(-12, s->cluster_data, csize, s->cluster_cache, s->cluster_size) < 0)
        return -EIO;
    s->cluster_cache_offset = coffset;
    return 0;
}

static int file_end(struct bds *bs, uint64_t align, uint64_t *out)
{
    int64_t len = blk_getlength(bs->file);
    if (len < 0)
        return (int)len;
    *out = align_up_u64((uint64_t)len, align);
    return 0;
}

/* qemu's get_cluster_offset: allocate 0 looks up, 1 allocates a normal
 * cluster for a write of [n_start, n_end) within it, 2 a compressed one of
 * compressed_size bytes. *result is the L2 entry (0 = unallocated). */
static int get_cluster_offset(struct bds *bs, uint64_t offset, int allocate,
                              uint32_t compressed_size, uint32_t n_start, uint32_t n_end,
                              uint64_t *result)
{
    struct qcow_state *s = qst(bs);
    uint32_t l1_index = (uint32_t)(offset >> (s->l2_bits + s->cluster_bits));
    uint32_t l2_index = (uint32_t)(offset >> s->cluster_bits) & (s->l2_size - 1);
    uint64_t l2_offset, cluster_offset;
    bool fresh = false;
    uint8_t *l2, tmp[8];
    int r = 0;

    *result = 0;
    if (l1_index >= s->l1_size)
        return -EIO;
    l2_offset = s->l1[l1_index];
    if (!l2_offset) {
        if (!allocate)
            return 0;
        if ((r = file_end(bs, s->cluster_size, &l2_offset)) < 0)
            return r;
        s->l1[l1_index] = l2_offset;
        put_be64(tmp, l2_offset);
        if ((r = blk_pwrite(bs->file, s->l1_table_offset + (uint64_t)l1_index * 8, 8, tmp, 0)) < 0)
            return r;
        fresh = true;
    }
    l2 = l2_load(bs, l2_offset, fresh, &r);
    if (!l2)
        return r;
    cluster_offset = get_be64(l2 + (size_t)l2_index * 8);
    if (cluster_offset && !((cluster_offset & QCOW_OFLAG_COMPRESSED) && allocate == 1)) {
        *result = cluster_offset;
        return 1;
    }
    if (!allocate)
        return 0;
    if ((cluster_offset & QCOW_OFLAG_COMPRESSED) && n_end - n_start < s->cluster_size) {
        /* A partly overwritten compressed cluster is decompressed first. */
        if (decompress_cluster(bs, cluster_offset) < 0)
            return -EIO;
        if ((r = file_end(bs, s->cluster_size, &cluster_offset)) < 0)
            return r;
        if ((r = blk_pwrite(bs->file, cluster_offset, s->cluster_size, s->cluster_cache, 0)) < 0)
            return r;
    } else if (allocate == 1) {
        if ((r = file_end(bs, s->cluster_size, &cluster_offset)) < 0)
            return r;
        if (cluster_offset + s->cluster_size > INT64_MAX)
            return -E2BIG;
        if ((r = blk_truncate(bs->file, cluster_offset + s->cluster_size, false,
                              BLK_PREALLOC_OFF, NULL)) < 0)
            return r;
        /* Encrypted: the sectors this write leaves alone hold encrypted
         * zeros, so that they read back as zeros. */
        if (bs->encrypted && n_end - n_start < s->cluster_size) {
            uint64_t start = offset & ~(uint64_t)(s->cluster_size - 1);
            for (uint32_t i = 0; i < s->cluster_size; i += 512) {
                if (i >= n_start && i < n_end)
                    continue;
                memset(s->cluster_data, 0, 512);
                if ((r = qcow_crypt(s, start + i, s->cluster_data, 512, true)) < 0 ||
                    (r = blk_pwrite(bs->file, cluster_offset + i, 512, s->cluster_data, 0)) < 0)
                    return r;
            }
        }
    } else {
        if ((r = file_end(bs, 1, &cluster_offset)) < 0)
            return r;
        cluster_offset |= QCOW_OFLAG_COMPRESSED |
                          (uint64_t)compressed_size << (63 - s->cluster_bits);
    }
    put_be64(l2 + (size_t)l2_index * 8, cluster_offset);
    if ((r = blk_pwrite(bs->file, l2_offset + (uint64_t)l2_index * 8, 8,
                        l2 + (size_t)l2_index * 8, 0)) < 0)
        return r;
    *result = cluster_offset;
    return 1;
}

static int qcow_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct qcow_state *s = qst(bs);
    uint8_t *p = buf;

    while (len) {
        uint64_t entry;
        uint32_t oic = (uint32_t)(off & (s->cluster_size - 1));
        uint64_t n = min_u64(len, s->cluster_size - oic);
        int r = get_cluster_offset(bs, off, 0, 0, 0, 0, &entry);

        if (r < 0)
            return r;
        if (!entry) {
            r = blk_read_backing(bs, off, n, p);
        } else if (entry & QCOW_OFLAG_COMPRESSED) {
            if (decompress_cluster(bs, entry) < 0)
                return -EIO;
            memcpy(p, s->cluster_cache + oic, (size_t)n);
        } else {
            if (entry & 511)
                return -EIO;
            r = blk_pread(bs->file, entry + oic, n, p);
            if (r == 0 && bs->encrypted)
                r = qcow_crypt(s, off, p, n, false);
        }
        if (r < 0)
            return r;
        off += n;
        len -= n;
        p += n;
    }
    return 0;
}

static int write_plain(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *p)
{
    struct qcow_state *s = qst(bs);

    s->cluster_cache_offset = UINT64_MAX;
    while (len) {
        uint64_t entry;
        uint32_t oic = (uint32_t)(off & (s->cluster_size - 1));
        uint64_t n = min_u64(len, s->cluster_size - oic);
        int r = get_cluster_offset(bs, off, 1, 0, oic, (uint32_t)(oic + n), &entry);

        if (r < 0)
            return r;
        if (!entry || (entry & 511))
            return -EIO;
        if (bs->encrypted) {
            /* cluster_data is free scratch once the cluster is mapped. */
            memcpy(s->cluster_data, p, (size_t)n);
            if ((r = qcow_crypt(s, off, s->cluster_data, n, true)) < 0 ||
                (r = blk_pwrite(bs->file, entry + oic, n, s->cluster_data, 0)) < 0)
                return r;
        } else if ((r = blk_pwrite(bs->file, entry + oic, n, p, 0)) < 0) {
            return r;
        }
        off += n;
        len -= n;
        p += n;
    }
    return 0;
}

/* One cluster (or the image's last, partial one) stored compressed when
 * deflate makes it smaller, as plain data otherwise. */
static int write_compressed_cluster(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *p)
{
    struct qcow_state *s = qst(bs);
    uint8_t *in = s->cluster_cache, *out = s->cluster_data;
    uint64_t entry;
    uint32_t out_len;
    long clen;
    int r;

    s->cluster_cache_offset = UINT64_MAX;
    memcpy(in, p, (size_t)len);
    memset(in + len, 0, (size_t)(s->cluster_size - len));
    clen = deflate_zlib_window(Z_DEFAULT_COMPRESSION, -12, in, s->cluster_size, out, s->cluster_size);
    if (clen < 0 && clen != -ENOSPC)
        return -EINVAL;
    if (clen < 0 || (uint64_t)clen >= s->cluster_size)
        return write_plain(bs, off, len, p);
    out_len = (uint32_t)clen;
    if ((r = get_cluster_offset(bs, off, 2, out_len, 0, 0, &entry)) < 0)
        return r;
    if (!entry)
        return -EIO;
    return blk_pwrite(bs->file, entry & s->cluster_offset_mask, out_len, out, 0);
}

static int qcow_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    struct qcow_state *s = qst(bs);
    const uint8_t *p = buf;

    if (!(flags & BLK_WRITE_COMPRESSED))
        return write_plain(bs, off, len, p);
    while (len) {
        uint64_t n = min_u64(len, s->cluster_size);
        int r;
        /* Whole clusters only, except the short last one of the image. */
        if ((off & (s->cluster_size - 1)) ||
            (n < s->cluster_size && off + n != bs->total_size))
            return -EINVAL;
        if ((r = write_compressed_cluster(bs, off, n, p)) < 0)
            return r;
        off += n;
        len -= n;
        p += n;
    }
    return 0;
}

/* Does entry (cluster at distance delta from the first) continue the run
 * of first: both unallocated, both compressed, or plain and contiguous? */
static bool same_kind(const struct qcow_state *s, uint64_t first, uint64_t entry, uint64_t delta,
                      bool encrypted)
{
    (void)s;
    if (!first || !entry)
        return !first && !entry;
    if ((first & QCOW_OFLAG_COMPRESSED) || (entry & QCOW_OFLAG_COMPRESSED))
        return (first & QCOW_OFLAG_COMPRESSED) && (entry & QCOW_OFLAG_COMPRESSED);
    return encrypted || entry == first + delta;
}

static int qcow_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, struct bds **file)
{
    struct qcow_state *s = qst(bs);
    uint64_t cs = s->cluster_size, first, entry;
    uint64_t oic = off & (cs - 1), n;
    int r = get_cluster_offset(bs, off, 0, 0, 0, 0, &first);

    if (r < 0)
        return r;
    /* Extend over following clusters of the same kind (and, for plain
     * ones, contiguous in the file) within the same L2 table. */
    n = cs - oic;
    for (uint64_t pos = off - oic + cs; n < len; pos += cs, n += cs) {
        if ((pos >> (s->l2_bits + s->cluster_bits)) != (off >> (s->l2_bits + s->cluster_bits)))
            break;
        if ((r = get_cluster_offset(bs, pos, 0, 0, 0, 0, &entry)) < 0)
            return r;
        if (!same_kind(s, first, entry, pos - (off - oic), bs->encrypted))
            break;
    }
    *pnum = min_u64(n, len);
    if (!first)
        return 0;
    if (first & QCOW_OFLAG_COMPRESSED)
        return BLK_STATUS_DATA | BLK_STATUS_COMPRESSED;
    if (bs->encrypted)
        return BLK_STATUS_DATA;
    *map = first + oic;
    *file = bs->file;
    return BLK_STATUS_DATA | BLK_STATUS_OFFSET_VALID;
}

static int qcow_make_empty(struct bds *bs, struct err *err)
{
    struct qcow_state *s = qst(bs);
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    uint8_t *z = calloc(1, (size_t)bytes + 1);
    int r;

    if (!z)
        return err_set(err, ENOMEM, "Could not empty the image");
    memset(s->l1, 0, (size_t)bytes);
    r = blk_pwrite(bs->file, s->l1_table_offset, bytes, z, 0);
    free(z);
    if (r == 0)
        r = blk_flush(bs->file);
    if (r < 0)
        return err_set_errno(err, -r, "Could not empty the image");
    /* qemu asks inexactly but file-posix always resizes regular files. */
    if ((r = blk_truncate(bs->file, s->l1_table_offset + bytes, true, BLK_PREALLOC_OFF, err)) < 0)
        return r;
    memset(s->l2_cache_offsets, 0, sizeof(s->l2_cache_offsets));
    memset(s->l2_cache_counts, 0, sizeof(s->l2_cache_counts));
    s->cluster_cache_offset = UINT64_MAX;
    return 0;
}

static int qcow_get_info(struct bds *bs, struct blk_info *bi)
{
    bi->cluster_size = qst(bs)->cluster_size;
    return 0;
}

static bool qcow_has_zero_init(struct bds *bs)
{
    (void)bs;
    return true;
}

static int qcow_create(const char *filename, struct kvopts *opts, struct err *err)
{
    const char *backing = kvopts_get(opts, "backing_file");
    const char *bfmt = kvopts_get(opts, "backing_fmt");
    const char *efmt = kvopts_get(opts, "encrypt.format");
    uint64_t size, l1_size, header_size;
    uint32_t name_len = 0, shift;
    bool encrypt = false;
    uint8_t h[QCOW_HEADER_LEN], zero[512];
    struct bds *proto;
    int r;

    if (bfmt && !blk_find_format(bfmt))
        return err_set(err, EINVAL, "unrecognized backing format '%s'", bfmt);
    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0 ||
        (r = kvopts_get_bool(opts, "encryption", false, &encrypt, err)) < 0)
        return r;
    if ((r = blk_create_file(filename, opts, err)) < 0)
        return r;
    /* qemu drops encryption=off and renames encryption=on to format aes. */
    if (kvopts_has(opts, "encryption") && encrypt && efmt)
        return err_set(err, EINVAL, "'encrypt.format' and its alias 'encryption' can't be used at the same time");
    if (!efmt && !encrypt && kvopts_has(opts, "encrypt.key-secret"))
        return err_set(err, EINVAL, "Parameter 'encrypt.format' is missing");
    if (efmt && strcmp(efmt, "qcow") && strcmp(efmt, "luks") && strcmp(efmt, "aes"))
        return err_set(err, EINVAL, "Parameter 'format' does not accept value '%s'", efmt);
    if (size > UINT64_MAX - 511)
        return err_set(err, EINVAL, "Image size too large");
    size = align_up_u64(size, 512);
    if (size == 0)
        return err_set(err, EINVAL, "Image size is too small, cannot be zero length");
    if (efmt && !strcmp(efmt, "luks"))
        return err_set(err, EINVAL, "Unsupported encryption format");
    if (encrypt || efmt) {
        /* No header: the key is only looked up. */
        const char *sec = kvopts_get(opts, "encrypt.key-secret");
        if (!sec)
            return err_set(err, EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
        if (!secret_get(sec, NULL, err))
            return -EINVAL;
        encrypt = true;
    }

    memset(h, 0, sizeof(h));
    put_be32(h + QCH_MAGIC, QCOW_MAGIC);
    put_be32(h + QCH_VERSION, QCOW_VERSION);
    put_be64(h + QCH_SIZE, size);
    header_size = QCOW_HEADER_LEN;
    if (backing) {
        /* "fat:" names qemu's vvfat and is not stored. */
        if (strcmp(backing, "fat:")) {
            name_len = (uint32_t)strlen(backing);
            put_be64(h + QCH_BACKING_OFFSET, header_size);
            put_be32(h + QCH_BACKING_SIZE, name_len);
            header_size += name_len;
        } else {
            backing = NULL;
        }
        /* 512-byte clusters: a partial write never loses backing data. */
        h[QCH_CLUSTER_BITS] = 9;
        h[QCH_L2_BITS] = 12;
    } else {
        h[QCH_CLUSTER_BITS] = 12;
        h[QCH_L2_BITS] = 9;
    }
    header_size = align_up_u64(header_size, 8);
    shift = h[QCH_CLUSTER_BITS] + h[QCH_L2_BITS];
    l1_size = size / (1ULL << shift) + (size % (1ULL << shift) != 0);
    put_be64(h + QCH_L1_OFFSET, header_size);
    put_be32(h + QCH_CRYPT_METHOD, encrypt ? QCOW_CRYPT_AES : QCOW_CRYPT_NONE);

    proto = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!proto)
        return -EIO;
    memset(zero, 0, sizeof(zero));
    r = blk_pwrite(proto, 0, sizeof(h), h, 0);
    if (r == 0 && backing)
        r = blk_pwrite(proto, QCOW_HEADER_LEN, name_len, backing, 0);
    for (uint64_t i = 0; r == 0 && i < div_round_up_u64(l1_size * 8, 512); i++)
        r = blk_pwrite(proto, header_size + 512 * i, 512, zero, 0);
    if (r == 0)
        /* As qemu, which flushes at close and drops the error: a failing
         * flush does not fail the create. */
        blk_flush(proto);
    if (r < 0)
        err_set_errno(err, -r, "Could not write the qcow image");
    blk_close(proto);
    return r;
}

static const struct opt_desc qcow_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "backing_file", OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", OPT_STRING, "Format of the backing image", NULL },
    { "encryption", OPT_BOOL, "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", NULL },
    { "encrypt.format", OPT_STRING, "Encrypt the image, format choices: 'aes'", NULL },
    { "encrypt.key-secret", OPT_STRING, "ID of the secret that provides the AES encryption key", NULL },
    { NULL, 0, NULL, NULL },
};

const struct blk_driver qcow_driver = {
    .name = "qcow",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct qcow_state),
    .thread_model = BLK_THREAD_SERIALIZE,
    .supports_backing = true,
    .supports_compressed_writes = true,
    .create_opts = qcow_create_opts,
    .probe = qcow_probe,
    .open = qcow_open,
    .close = qcow_close,
    .create = qcow_create,
    .pread = qcow_pread,
    .pwrite = qcow_pwrite,
    .block_status = qcow_block_status,
    .get_info = qcow_get_info,
    .make_empty = qcow_make_empty,
    .has_zero_init = qcow_has_zero_init,
};

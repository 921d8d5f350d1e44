/* qcow2 compressed clusters (qcow2.txt "Compressed Clusters Descriptor",
 * header "compression_type"): zlib raw deflate (window 4 KiB, no zlib
 * header, as qemu writes it) and zstd frames.
 *
 * Decompression must stop after one cluster of output: the stored length is
 * rounded to sectors, so trailing bytes may belong to the next cluster. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "formats/qcow2/qcow2.h"
#include "util/deflate.h"
#include "util/objpool.h"

/* zstd contexts are pooled (util/objpool.h): a fresh compression context
 * per 64 KiB cluster ran at about a third of a reused one's speed. The
 * pools are keyed by nothing (0); a context's parameters are set per use. */
static void free_cctx(void *c)
{
    ZSTD_freeCCtx(c);
}

static void free_dctx(void *d)
{
    ZSTD_freeDCtx(d);
}

static struct objpool cctxs = OBJPOOL_INIT(free_cctx);
static struct objpool dctxs = OBJPOOL_INIT(free_dctx);

__attribute__((destructor)) static void zstd_pools_release(void)
{
    objpool_drain(&cctxs);
    objpool_drain(&dctxs);
}

static int zstd_decompress_stream(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
    ZSTD_DCtx *dctx = objpool_get(&dctxs, 0);
    ZSTD_inBuffer in = { src, slen, 0 };
    ZSTD_outBuffer out = { dst, dlen, 0 };
    int ret = 0;

    if (dctx)
        ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    else if (!(dctx = ZSTD_createDCtx()))
        return -ENOMEM;
    /* Frames may be followed by padding; stop once the cluster is full. */
    while (out.pos < out.size) {
        size_t in0 = in.pos, out0 = out.pos;
        size_t zr = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(zr) || (in.pos == in0 && out.pos == out0)) {
            ret = -EIO;
            break;
        }
    }
    objpool_put(&dctxs, 0, dctx);
    return ret;
}

int qcow2_decompress(int type, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
    switch (type) {
    case QCOW2_COMPRESS_ZLIB:
        return inflate_window_exact(-12, src, slen, dst, dlen);
    case QCOW2_COMPRESS_ZSTD:
        return zstd_decompress_stream(src, slen, dst, dlen);
    default:
        return -EIO;
    }
}

long qcow2_compress(int type, int level, const uint8_t *src, size_t slen, uint8_t *dst,
                    size_t dlen)
{
    if (type == QCOW2_COMPRESS_ZLIB) {
        /* Random or already compressed data is stored uncompressed in the
         * end; zlib is slowest on exactly that data, so test it quickly. */
        if (deflate_incompressible(src, slen, dlen))
            return -ENOSPC;
        /* qemu inflates with a 4 KiB window: distances must stay within
         * it, which rules out encoders without a window setting. */
        return deflate_zlib_window(level > 0 ? (level > 9 ? 9 : level) : Z_DEFAULT_COMPRESSION,
                                   -12, src, slen, dst, dlen);
    }
    if (type == QCOW2_COMPRESS_ZSTD) {
        ZSTD_CCtx *c = objpool_get(&cctxs, 0);
        ZSTD_inBuffer in = { src, slen, 0 };
        ZSTD_outBuffer out = { dst, dlen, 0 };
        size_t zr;
        /* A pooled context may hold the end of a frame that did not fit. */
        if (c)
            ZSTD_CCtx_reset(c, ZSTD_reset_session_only);
        else if (!(c = ZSTD_createCCtx()))
            return -ENOMEM;
        /* One frame, content size recorded, checksum off (as qemu); 0 is
         * zstd's default level. */
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level > 0 ? (level > 19 ? 19 : level) : 0);
        zr = ZSTD_compressStream2(c, &out, &in, ZSTD_e_end);
        objpool_put(&cctxs, 0, c);
        if (ZSTD_isError(zr) || zr != 0)
            return -ENOSPC;
        return (long)out.pos;
    }
    return -ENOTSUP;
}

/* Read and decompress the cluster described by a compressed L2 entry. */
int qcow2_read_compressed_into(struct bds *bs, uint64_t entry, uint8_t *out, uint8_t *cin)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t host, len;
    int r;

    qcow2_compressed_decode(entry, s->cluster_bits, &host, &len);
    if (len > 2 * s->cluster_size)
        return -EIO;
    /* The last sectors of a compressed cluster may lie past the end of the
     * file; read what exists. */
    int64_t flen = blk_getlength(bs->file);
    if (flen < 0)
        return (int)flen;
    if (host >= (uint64_t)flen)
        return -EIO;
    len = min_u64(len, (uint64_t)flen - host);
    r = blk_pread(bs->file, host, len, cin);
    if (r < 0)
        return r;
    return qcow2_decompress(s->compression_type, cin, len, out, s->cluster_size);
}

int qcow2_read_compressed(struct bds *bs, uint64_t entry, uint8_t *out)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r;

    if (s->cbuf_entry == entry && s->cbuf) {
        memcpy(out, s->cbuf, s->cluster_size);
        return 0;
    }
    if (!s->cin) {
        s->cin = malloc(2 * s->cluster_size);
        s->cbuf = malloc(s->cluster_size);
        if (!s->cin || !s->cbuf)
            return -ENOMEM;
    }
    s->cbuf_entry = 0;
    r = qcow2_read_compressed_into(bs, entry, s->cbuf, s->cin);
    if (r < 0)
        return r;
    s->cbuf_entry = entry;
    memcpy(out, s->cbuf, s->cluster_size);
    return 0;
}

/* Compress one whole cluster (or the partial last cluster, padded with
 * zeros) into dst; touches no state, so many threads may call it. */
long qcow2_compress_op(struct bds *bs, const void *buf, size_t len, void *dst, size_t cap)
{
    const struct qcow2_state *s = qcow2_st(bs);
    size_t cs = (size_t)s->cluster_size;
    uint8_t *in = NULL;
    long clen;

    if (len > cs || cap < 1)
        return -EINVAL;
    if (len < cs) {
        /* The tail cluster is compressed padded with zeros. */
        in = calloc(1, cs);
        if (!in)
            return -ENOMEM;
        memcpy(in, buf, len);
        buf = in;
    }
    clen = qcow2_compress(s->compression_type, bs->compress_level, buf, cs, dst,
                          cap < cs ? cap : cs - 1);
    free(in);
    return clen;
}

/* Store one compressed cluster at guest offset off: clen bytes of out. */
static int store_compressed(struct bds *bs, uint64_t off, const uint8_t *out, uint64_t clen)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint8_t *l2;
    int64_t host;
    uint64_t old;
    int r;

    r = qcow2_get_l2(bs, off, true, &l2);
    if (r < 0)
        return r;
    old = qcow2_l2e_get(s, l2, qcow2_l2_index(s, off));
    if (old & (QCOW2_L2E_OFFSET_MASK | QCOW2_OFLAG_COMPRESSED))
        return -EIO;    /* qemu refuses compressed writes over allocated clusters */
    host = qcow2_alloc_bytes(bs, clen);
    if (host < 0)
        return (int)host;
    r = blk_pwrite(bs->file, (uint64_t)host, clen, out, 0);
    if (r < 0) {
        qcow2_free_clusters(bs, (uint64_t)host, clen, QCOW2_DISCARD_NEVER);
        return r;
    }
    s->need_file_flush = true;
    s->wrote_compressed = true;
    r = qcow2_get_l2(bs, off, true, &l2);
    if (r < 0)
        return r;
    qcow2_l2e_set(s, l2, qcow2_l2_index(s, off),
                  qcow2_compressed_encode((uint64_t)host, clen, s->cluster_bits));
    qcow2_l2b_set(s, l2, qcow2_l2_index(s, off), 0);
    qcow2_cache_mark_dirty(&s->l2_cache, l2);
    s->cbuf_entry = 0;
    return 0;
}

static int check_compressed_request(struct bds *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_st(bs);
    if (qcow2_has_data_file(s))
        return -ENOTSUP;
    if (qcow2_off_in_cluster(s, off))
        return -EINVAL;
    if (len != s->cluster_size && (off + len != bs->total_size || len > s->cluster_size))
        return -EINVAL;
    return 0;
}

int qcow2_pwrite_compressed_op(struct bds *bs, uint64_t off, uint64_t len, const void *buf,
                               const void *payload, long plen)
{
    int r = check_compressed_request(bs, off, len);
    if (r < 0)
        return r;
    qcow2_bitmap_note_write(bs, off, len);
    if (plen < 0)
        return qcow2_write_data(bs, off, len, buf);   /* incompressible */
    if ((uint64_t)plen >= qcow2_st(bs)->cluster_size || plen == 0)
        return -EINVAL;
    return store_compressed(bs, off, payload, (uint64_t)plen);
}

/* Write one whole cluster (or the partial last cluster of the image)
 * compressed. Falls back to a normal write when compression does not help,
 * as qemu does. */
int qcow2_write_compressed(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf)
{
    uint8_t *out;
    long clen;
    int r = check_compressed_request(bs, off, len);

    if (r < 0)
        return r;
    out = malloc((size_t)qcow2_st(bs)->cluster_size);
    if (!out)
        return -ENOMEM;
    clen = qcow2_compress_op(bs, buf, (size_t)len, out, (size_t)qcow2_st(bs)->cluster_size - 1);
    if (clen == -ENOSPC)
        r = qcow2_write_data(bs, off, len, buf);   /* incompressible: a normal cluster */
    else if (clen < 0)
        r = (int)clen;
    else
        r = store_compressed(bs, off, out, (uint64_t)clen);
    free(out);
    return r;
}

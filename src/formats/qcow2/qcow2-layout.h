/* qcow2 on-disk layout: header field offsets, flag bits, limits and the pure
 * helpers that decode table entries (docs/interop/qcow2.txt, "Header",
 * "Host cluster management", "Cluster mapping", "Extended L2 Entries").
 *
 * Everything here works on numbers already read from the image; nothing in
 * this header trusts them — callers validate offsets before use. */
#ifndef QIMG_QCOW2_LAYOUT_H
#define QIMG_QCOW2_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/endian.h"

#define QCOW2_MAGIC 0x514649fbu          /* "QFI\xfb" */

/* Header field offsets (big-endian). */
enum {
    QH_MAGIC = 0, QH_VERSION = 4, QH_BACKING_OFFSET = 8, QH_BACKING_SIZE = 16,
    QH_CLUSTER_BITS = 20, QH_SIZE = 24, QH_CRYPT_METHOD = 32, QH_L1_SIZE = 36,
    QH_L1_OFFSET = 40, QH_REFTABLE_OFFSET = 48, QH_REFTABLE_CLUSTERS = 56,
    QH_NB_SNAPSHOTS = 60, QH_SNAPSHOTS_OFFSET = 64,
    QH_INCOMPAT = 72, QH_COMPAT = 80, QH_AUTOCLEAR = 88,
    QH_REFCOUNT_ORDER = 96, QH_HEADER_LENGTH = 100, QH_COMPRESSION_TYPE = 104,
};
#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_MIN_HEADER_LEN 104u
#define QCOW2_V3_HEADER_LEN 112u          /* what we (and qemu 7.2) write */

/* Feature bits. */
#define QCOW2_INCOMPAT_DIRTY        (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ULL << 4)
#define QCOW2_INCOMPAT_MASK         0x1fULL
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
#define QCOW2_AUTOCLEAR_BITMAPS     (1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ULL << 1)
#define QCOW2_AUTOCLEAR_MASK        0x3ULL

#define QCOW2_COMPRESS_ZLIB 0
#define QCOW2_COMPRESS_ZSTD 1

#define QCOW2_CRYPT_NONE 0
#define QCOW2_CRYPT_AES  1
#define QCOW2_CRYPT_LUKS 2

/* Header extension magics. */
#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857u
#define QCOW2_EXT_CRYPTO_HEADER  0x0537be77u
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_DATA_FILE      0x44415441u

/* Limits qemu 7.2 enforces. */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES       (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_SNAPSHOT_HEADER_LEN 40u
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024u
#define QCOW2_MAX_CLUSTER_OFFSET ((1ULL << 56) - 1)
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_DEFAULT_CLUSTER_SIZE 65536u
#define QCOW2_SUBCLUSTERS 32u

/* Entry masks. */
#define QCOW2_OFLAG_COPIED     (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO       (1ULL << 0)
#define QCOW2_L1E_OFFSET_MASK  0x00fffffffffffe00ULL
#define QCOW2_L1E_RESERVED     0x7f000000000001ffULL
#define QCOW2_L2E_OFFSET_MASK  0x00fffffffffffe00ULL
#define QCOW2_L2E_STD_RESERVED 0x3f000000000001feULL
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ULL
#define QCOW2_REFT_RESERVED    0x1ffULL
#define QCOW2_L2_BITMAP_ALL_ALLOC 0x00000000ffffffffULL
#define QCOW2_L2_BITMAP_ALL_ZERO  0xffffffff00000000ULL
#define QCOW2_COMPRESSED_SECTOR 512u

/* What a (sub)cluster is, as seen by the read path. */
enum qcow2_sc_type {
    QCOW2_SC_NORMAL,              /* allocated data at host offset */
    QCOW2_SC_COMPRESSED,
    QCOW2_SC_ZERO_PLAIN,          /* reads as zero, no host cluster */
    QCOW2_SC_ZERO_ALLOC,          /* reads as zero, host cluster reserved */
    QCOW2_SC_UNALLOC_PLAIN,       /* falls through to backing */
    QCOW2_SC_UNALLOC_ALLOC,       /* ditto, host cluster reserved (extended L2) */
    QCOW2_SC_INVALID,
};

/* Classify an L2 entry (and, with extended L2, its bitmap) at subcluster
 * sc. has_data_file disambiguates host offset 0. */
static inline enum qcow2_sc_type qcow2_classify(uint64_t entry, uint64_t bitmap, unsigned sc,
                                                bool extl2, bool has_data_file)
{
    uint64_t off = entry & QCOW2_L2E_OFFSET_MASK;
    bool alloc;

    if (entry & QCOW2_OFLAG_COMPRESSED)
        return QCOW2_SC_COMPRESSED;
    alloc = off != 0 || (has_data_file && (entry & QCOW2_OFLAG_COPIED));
    if (!extl2) {
        if (entry & QCOW2_OFLAG_ZERO)
            return alloc ? QCOW2_SC_ZERO_ALLOC : QCOW2_SC_ZERO_PLAIN;
        return alloc ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOC_PLAIN;
    }
    if (alloc) {
        if ((bitmap >> 32) & bitmap)
            return QCOW2_SC_INVALID;
        if (bitmap & (1ULL << (sc + 32)))
            return QCOW2_SC_ZERO_ALLOC;
        if (bitmap & (1ULL << sc))
            return QCOW2_SC_NORMAL;
        return QCOW2_SC_UNALLOC_ALLOC;
    }
    if (bitmap & QCOW2_L2_BITMAP_ALL_ALLOC)
        return QCOW2_SC_INVALID;
    if (bitmap & (1ULL << (sc + 32)))
        return QCOW2_SC_ZERO_PLAIN;
    return QCOW2_SC_UNALLOC_PLAIN;
}

/* Compressed cluster descriptor: x = 62 - (cluster_bits - 8) low bits of host
 * byte offset, then the count of additional 512-byte sectors. */
static inline unsigned qcow2_csize_shift(unsigned cluster_bits) { return 62 - (cluster_bits - 8); }
static inline uint64_t qcow2_coffset_mask(unsigned cluster_bits)
{
    return (1ULL << qcow2_csize_shift(cluster_bits)) - 1;
}
static inline uint64_t qcow2_csize_mask(unsigned cluster_bits)
{
    return (1ULL << (cluster_bits - 8)) - 1;
}
/* Host byte offset and byte length of the compressed data. */
static inline void qcow2_compressed_decode(uint64_t entry, unsigned cluster_bits,
                                           uint64_t *host, uint64_t *len)
{
    uint64_t off = entry & qcow2_coffset_mask(cluster_bits);
    uint64_t nsect = ((entry >> qcow2_csize_shift(cluster_bits)) & qcow2_csize_mask(cluster_bits)) + 1;
    *host = off;
    *len = nsect * QCOW2_COMPRESSED_SECTOR - (off & (QCOW2_COMPRESSED_SECTOR - 1));
}
/* Encode a compressed descriptor for len bytes at host (len >= 1). */
static inline uint64_t qcow2_compressed_encode(uint64_t host, uint64_t len, unsigned cluster_bits)
{
    uint64_t last = (host + len - 1) / QCOW2_COMPRESSED_SECTOR;
    uint64_t first = host / QCOW2_COMPRESSED_SECTOR;
    uint64_t nsect_extra = last - first;
    return QCOW2_OFLAG_COMPRESSED | host |
           (nsect_extra << qcow2_csize_shift(cluster_bits));
}

/* Refcount entries of width 1 << order bits (sub-byte widths: LSB first). */
static inline uint64_t qcow2_refcount_get(const uint8_t *blk, uint64_t i, unsigned order)
{
    switch (order) {
    case 0: return (blk[i / 8] >> (i % 8)) & 1;
    case 1: return (blk[i / 4] >> (2 * (i % 4))) & 3;
    case 2: return (blk[i / 2] >> (4 * (i % 2))) & 15;
    case 3: return blk[i];
    case 4: return get_be16(blk + 2 * i);
    case 5: return get_be32(blk + 4 * i);
    default: return get_be64(blk + 8 * i);
    }
}

static inline void qcow2_refcount_set(uint8_t *blk, uint64_t i, unsigned order, uint64_t v)
{
    unsigned shift;
    switch (order) {
    case 0: shift = i % 8; blk[i / 8] = (uint8_t)((blk[i / 8] & ~(1u << shift)) | (v & 1) << shift); break;
    case 1: shift = 2 * (i % 4); blk[i / 4] = (uint8_t)((blk[i / 4] & ~(3u << shift)) | (v & 3) << shift); break;
    case 2: shift = 4 * (i % 2); blk[i / 2] = (uint8_t)((blk[i / 2] & ~(15u << shift)) | (v & 15) << shift); break;
    case 3: blk[i] = (uint8_t)v; break;
    case 4: put_be16(blk + 2 * i, (uint16_t)v); break;
    case 5: put_be32(blk + 4 * i, (uint32_t)v); break;
    default: put_be64(blk + 8 * i, v); break;
    }
}

static inline uint64_t qcow2_refcount_max(unsigned order)
{
    return order >= 6 ? UINT64_MAX : (1ULL << (1u << order)) - 1;
}

#endif

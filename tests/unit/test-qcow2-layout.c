/* qcow2 layout helpers: L2 entry classification, compressed descriptor
 * encode/decode, refcount get/set for every refcount width, and the refcount
 * metadata size fixed point. */
#include "formats/qcow2/qcow2.h"
#include "tap.h"

static void test_classify(void)
{
    /* standard entries */
    is_int(qcow2_classify(0, 0, 0, false, false), QCOW2_SC_UNALLOC_PLAIN, "0 is unallocated");
    is_int(qcow2_classify(0x50000 | QCOW2_OFLAG_COPIED, 0, 0, false, false), QCOW2_SC_NORMAL, "offset is normal");
    is_int(qcow2_classify(QCOW2_OFLAG_ZERO, 0, 0, false, false), QCOW2_SC_ZERO_PLAIN, "zero flag, no offset");
    is_int(qcow2_classify(0x50000 | QCOW2_OFLAG_ZERO, 0, 0, false, false), QCOW2_SC_ZERO_ALLOC, "zero flag with offset");
    is_int(qcow2_classify(QCOW2_OFLAG_COMPRESSED | 0x1234, 0, 0, false, false), QCOW2_SC_COMPRESSED, "compressed");
    /* external data file: offset 0 with COPIED is allocated */
    is_int(qcow2_classify(QCOW2_OFLAG_COPIED, 0, 0, false, true), QCOW2_SC_NORMAL, "data file offset 0");
    is_int(qcow2_classify(QCOW2_OFLAG_COPIED, 0, 0, false, false), QCOW2_SC_UNALLOC_PLAIN, "no data file offset 0");
    /* extended L2 */
    uint64_t e = 0x50000 | QCOW2_OFLAG_COPIED;
    uint64_t bm = 0x1ULL | (0x2ULL << 32);          /* sc0 alloc, sc1 zero */
    is_int(qcow2_classify(e, bm, 0, true, false), QCOW2_SC_NORMAL, "ext sc0 allocated");
    is_int(qcow2_classify(e, bm, 1, true, false), QCOW2_SC_ZERO_ALLOC, "ext sc1 zero");
    is_int(qcow2_classify(e, bm, 2, true, false), QCOW2_SC_UNALLOC_ALLOC, "ext sc2 unallocated");
    is_int(qcow2_classify(e, 0x1ULL | (0x1ULL << 32), 5, true, false), QCOW2_SC_INVALID, "ext alloc+zero invalid");
    is_int(qcow2_classify(0, 0x4, 0, true, false), QCOW2_SC_INVALID, "ext unallocated with alloc bit");
    is_int(qcow2_classify(0, 0x1ULL << 33, 1, true, false), QCOW2_SC_ZERO_PLAIN, "ext zero plain");
    /* the zero bit of the descriptor is unused with extended L2 */
    is_int(qcow2_classify(e | QCOW2_OFLAG_ZERO, 1, 0, true, false), QCOW2_SC_NORMAL, "ext ignores bit 0");
}

static void test_compressed(void)
{
    for (unsigned cb = 9; cb <= 21; cb++) {
        uint64_t host = 0x123456789ULL & qcow2_coffset_mask(cb), len = min_u64(700, (1ULL << cb) / 2), h, l;
        uint64_t e = qcow2_compressed_encode(host, len, cb);
        qcow2_compressed_decode(e, cb, &h, &l);
        ok(e & QCOW2_OFLAG_COMPRESSED, "cb=%u compressed flag", cb);
        is_uint(h, host, "cb=%u host offset", cb);
        /* length covers the data, rounded to the sector end */
        ok(l >= len && (h + l) % 512 == 0, "cb=%u length %" PRIu64 " covers %" PRIu64, cb, l, len);
    }
    /* qemu's formula for 64k clusters: shift 54, 8-bit sector count */
    is_uint(qcow2_csize_shift(16), 54, "csize shift 64k");
    is_uint(qcow2_csize_mask(16), 255, "csize mask 64k");
    uint64_t h, l;
    qcow2_compressed_decode(QCOW2_OFLAG_COMPRESSED | (2ULL << 54) | 0x50100, 16, &h, &l);
    is_uint(h, 0x50100, "decode host");
    is_uint(l, 3 * 512 - 0x100, "decode length");
}

static void test_refcounts(void)
{
    uint8_t blk[512];
    for (unsigned order = 0; order <= 6; order++) {
        uint64_t n = 512 * 8 >> order, max = qcow2_refcount_max(order);
        bool good = true;
        memset(blk, 0, sizeof(blk));
        for (uint64_t i = 0; i < n; i++)
            qcow2_refcount_set(blk, i, order, (i * 7 + 3) & max);
        for (uint64_t i = 0; i < n; i++)
            if (qcow2_refcount_get(blk, i, order) != ((i * 7 + 3) & max))
                good = false;
        ok(good, "order %u round trip of %" PRIu64 " entries", order, n);
        qcow2_refcount_set(blk, 1, order, max);
        is_uint(qcow2_refcount_get(blk, 1, order), max, "order %u max", order);
        is_uint(qcow2_refcount_get(blk, 0, order), 3 & max, "order %u neighbour intact", order);
    }
    /* sub-byte widths are LSB first */
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set(blk, 0, 0, 1);
    qcow2_refcount_set(blk, 3, 0, 1);
    is_uint(blk[0], 0x09, "1-bit refcounts LSB first");
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set(blk, 1, 2, 0xa);
    is_uint(blk[0], 0xa0, "4-bit refcounts: second nibble high");
    memset(blk, 0, sizeof(blk));
    qcow2_refcount_set(blk, 1, 4, 0x1234);
    is_uint(blk[2], 0x12, "16-bit big-endian");
}

static void test_metadata_size(void)
{
    uint64_t blocks;
    /* 10G of data clusters with 64k clusters and 16-bit refcounts */
    uint64_t sz = qcow2_refcount_metadata_size(163842, 65536, 4, false, &blocks);
    is_uint(blocks, 6, "refblocks for 10G");
    is_uint(sz, 7 * 65536, "refcount metadata for 10G");
}

int main(void)
{
    test_classify();
    test_compressed();
    test_refcounts();
    test_metadata_size();
    return done_testing();
}

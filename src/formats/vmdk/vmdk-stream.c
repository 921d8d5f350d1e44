/* VMDK stream-optimized extents — VMware "Virtual Disk Format 1.1",
 * "Stream-Optimized Compressed Sparse Extents": grains compressed with
 * deflate (zlib stream), each behind a grain marker (lba u64, size u32), and
 * the footer (footer marker, header copy, end-of-stream marker) in the last
 * three sectors when the header's gdOffset is GD_AT_END.
 *
 * Writing follows qemu 7.2: grains are appended, sector aligned, after the
 * current end of the extent and entered in the grain tables created with the
 * image; no footer or end-of-stream marker is written. A grain once written
 * is never rewritten (the caller refuses that). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "formats/vmdk/vmdk.h"
#include "util/deflate.h"

int vmdk_read_footer(struct bds *file, uint8_t header[512], struct err *err)
{
    uint8_t f[1536];
    int64_t len = blk_getlength(file);
    uint64_t end;
    int r;

    if (len < 0)
        return err_set_errno(err, (int)-len, "Failed to read footer");
    end = align_up_u64((uint64_t)len, VMDK_SECTOR);
    if (end < sizeof(f))
        return err_set_errno(err, EINVAL, "Failed to read footer");
    r = blk_pread(file, end - sizeof(f), sizeof(f), f);
    if (r < 0)
        return err_set_errno(err, -r, "Failed to read footer");
    if (get_be32(f + 512) != VMDK4_MAGIC ||
        get_le32(f + 8) != 0 || get_le32(f + 12) != VMDK_MARKER_FOOTER ||
        get_le64(f + 1024) != 0 || get_le32(f + 1032) != 0 ||
        get_le32(f + 1036) != VMDK_MARKER_EOS)
        return err_set(err, EINVAL, "Invalid footer");
    memcpy(header, f + 512, 512);
    return 0;
}

int vmdk_read_compressed(struct vmdk_extent *e, uint64_t cluster_offset,
                         uint64_t offset_in_cluster, uint64_t len, void *buf)
{
    uint64_t cluster_bytes = e->cluster_sectors * VMDK_SECTOR;
    uint64_t buf_bytes = cluster_bytes * 2, avail = buf_bytes;
    uint8_t *cbuf, *ubuf, *data;
    uint64_t data_len;
    int64_t flen = blk_getlength(e->file);
    int r;

    if (flen < 0)
        return (int)flen;
    /* Only what the file holds is read: the rest of the window is zeros. */
    if (cluster_offset >= (uint64_t)flen)
        return -EINVAL;
    avail = min_u64(avail, (uint64_t)flen - cluster_offset);
    cbuf = calloc(1, (size_t)buf_bytes);
    ubuf = malloc((size_t)cluster_bytes);
    if (!cbuf || !ubuf) {
        r = -ENOMEM;
        goto out;
    }
    r = blk_pread(e->file, cluster_offset, avail, cbuf);
    if (r < 0)
        goto out;
    data = cbuf;
    data_len = cluster_bytes;
    if (e->has_marker) {
        data = cbuf + VMDK_GRAIN_MARKER_SIZE;
        data_len = get_le32(cbuf + 8);
        if (data_len > buf_bytes - VMDK_GRAIN_MARKER_SIZE) {
            r = -EINVAL;
            goto out;
        }
    }
    if (!data_len) {
        r = -EINVAL;
        goto out;
    }
    long out_len = inflate_zlib_stream(data, (size_t)data_len, ubuf, (size_t)cluster_bytes);
    if (out_len < 0 || offset_in_cluster + len > (uint64_t)out_len) {
        r = -EINVAL;
        goto out;
    }
    memcpy(buf, ubuf + offset_in_cluster, (size_t)len);
    r = 0;
out:
    free(cbuf);
    free(ubuf);
    return r;
}

long vmdk_compress_grain(int level, const void *buf, size_t len, void *dst, size_t cap)
{
    /* A zlib stream, as qemu's compress() writes (libdeflate: the same
     * format, faster at the same level). Random or already compressed data
     * would come out of the real encoder as stored blocks anyway: store it
     * without the match search. */
    if (deflate_incompressible(buf, len, len))
        return deflate_compress(DEFLATE_ZLIB, DEFLATE_LEVEL_STORED, buf, len, dst, cap);
    return deflate_compress(DEFLATE_ZLIB, level, buf, len, dst, cap);
}

int vmdk_write_compressed(struct vmdk_extent *e, uint64_t cluster_offset, uint64_t guest_offset,
                          uint64_t len, const void *buf, const void *payload, long plen,
                          int level)
{
    uint64_t cluster_bytes = e->cluster_sectors * VMDK_SECTOR;
    uLongf out_len = (uLongf)(cluster_bytes * 2);
    uint64_t total, padded;
    uint8_t *g;
    int r;

    if (!e->has_marker)
        return -EINVAL;
    g = malloc((size_t)(cluster_bytes * 2 + VMDK_GRAIN_MARKER_SIZE + VMDK_SECTOR));
    if (!g)
        return -ENOMEM;
    if (payload && plen > 0 && (uint64_t)plen <= cluster_bytes * 2) {
        memcpy(g + VMDK_GRAIN_MARKER_SIZE, payload, (size_t)plen);
        out_len = (uLongf)plen;
    } else {
        long n = vmdk_compress_grain(level, buf, (size_t)len, g + VMDK_GRAIN_MARKER_SIZE,
                                     (size_t)(cluster_bytes * 2));
        if (n <= 0) {
            r = -EINVAL;
            goto out;
        }
        out_len = (uLongf)n;
    }
    put_le64(g, guest_offset >> 9);
    put_le32(g + 8, (uint32_t)out_len);
    total = VMDK_GRAIN_MARKER_SIZE + out_len;
    /* The next grain starts on the next sector (the bytes up to it are the
     * zeros the grain's slot was filled with). */
    padded = align_up_u64(total, VMDK_SECTOR);
    r = blk_pwrite(e->file, cluster_offset, total, g, 0);
    if (r < 0)
        goto out;
    e->next_cluster_sector = (cluster_offset + padded) / VMDK_SECTOR;
    r = 0;
out:
    free(g);
    return r;
}

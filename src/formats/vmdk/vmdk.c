/* The VMDK format — VMware "Virtual Disk Format 1.1": probing (sparse magic
 * or a text descriptor), the text descriptor ("The Descriptor File": CID,
 * parentCID, createType, parentFileNameHint, extent lines), the extent list
 * that maps guest sectors onto flat and sparse extents, and the I/O, status,
 * info and check operations that walk it. Sparse lookups live in
 * vmdk-sparse.c, compressed grains in vmdk-stream.c, creation in
 * vmdk-create.c.
 *
 * Invariants: extents are contiguous and ordered (extent i covers guest
 * sectors [end_sector - sectors, end_sector)); the last end_sector is the
 * virtual size; descriptor text is read NUL-terminated and bounded
 * (VMDK_DESC_MAX bytes, at most VMDK_MAX_EXTENTS extents, no nested
 * descriptor inside a descriptor's extent). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "formats/vmdk/vmdk.h"

extern const struct blk_driver vmdk_driver;

static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
    const char *p = (const char *)buf, *end = p + len;
    (void)filename;

    if (len < 4)
        return 0;
    if (get_be32(buf) == VMDK3_MAGIC || get_be32(buf) == VMDK4_MAGIC)
        return 100;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        if (*p == ' ') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                return 0;
            p++;
            continue;
        }
        for (char v = '1'; v <= '3'; v++) {
            char lf[] = "version=X\n", crlf[] = "version=X\r\n";
            lf[8] = v;
            crlf[8] = v;
            if ((size_t)(end - p) >= strlen(lf) && !strncmp(lf, p, strlen(lf)))
                return 100;
            if ((size_t)(end - p) >= strlen(crlf) && !strncmp(crlf, p, strlen(crlf)))
                return 100;
        }
        return 0;
    }
    return 0;
}

char *vmdk_read_desc(struct bds *file, uint64_t offset, struct err *err)
{
    int64_t size = blk_getlength(file);
    char *buf;
    int r;

    if (size < 0) {
        err_set_errno(err, (int)-size, "Could not access file");
        return NULL;
    }
    if (size < 4) {
        err_set(err, EINVAL, "File is too small, not a valid image");
        return NULL;
    }
    size = size > VMDK_DESC_MAX ? VMDK_DESC_MAX : size;
    buf = malloc((size_t)size + 1);
    if (!buf) {
        err_set(err, ENOMEM, "Could not allocate the descriptor buffer");
        return NULL;
    }
    r = blk_pread(file, offset, (uint64_t)size, buf);
    if (r < 0) {
        err_set_errno(err, -r, "Could not read from file");
        free(buf);
        return NULL;
    }
    buf[size] = 0;
    return buf;
}

/* The descriptor area that holds the CID lines, NUL-terminated. */
static char *read_desc_area(struct bds *bs, size_t *size, int *res)
{
    struct vmdk_state *s = bs->opaque;
    size_t n = VMDK_DESC_SIZE;
    char *desc;

    if (s->desc_offset == 0) {
        int64_t len = blk_getlength(bs->file);
        if (len < 0) {
            *res = (int)len;
            return NULL;
        }
        if (len > (16LL << 20)) {
            *res = -EFBIG;
            return NULL;
        }
        n = (size_t)len > VMDK_DESC_SIZE ? (size_t)len : VMDK_DESC_SIZE;
    }
    desc = calloc(1, n + 1);
    if (!desc) {
        *res = -ENOMEM;
        return NULL;
    }
    *res = blk_pread(bs->file, s->desc_offset, n, desc);
    if (*res < 0) {
        free(desc);
        return NULL;
    }
    *size = n;
    return desc;
}

static int parse_hex_after(const char *desc, const char *key, uint32_t *out)
{
    const char *p = strstr(desc, key);
    char *end;
    if (!p)
        return -EINVAL;
    p += strlen(key) + 1;           /* the key and the '=' after it */
    if (!*(p - 1))
        return -EINVAL;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    unsigned long v = strtoul(p, &end, 16);
    if (end == p)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int read_cid(struct bds *bs, bool parent, uint32_t *cid)
{
    struct vmdk_state *s = bs->opaque;
    char *desc = calloc(1, VMDK_DESC_SIZE + 1);
    int r;

    if (!desc)
        return -ENOMEM;
    r = blk_pread(bs->file, s->desc_offset, VMDK_DESC_SIZE, desc);
    if (r == 0)
        r = parse_hex_after(desc, parent ? "parentCID" : "CID", cid);
    free(desc);
    return r;
}

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = (uint32_t)random();
    return v;
}

/* Replace the CID value: the text from after "CID=" up to "parentCID"
 * becomes "<hex>\n", as qemu rewrites it. */
static int write_cid(struct bds *bs, uint32_t cid)
{
    struct vmdk_state *s = bs->opaque;
    size_t size, head, tail_len, out_len;
    char *desc, *out = NULL, *tail, *p;
    int r;

    desc = read_desc_area(bs, &size, &r);
    if (!desc)
        return r;
    tail = strstr(desc, "parentCID");
    p = strstr(desc, "CID");
    if (!tail || !p) {
        r = -EINVAL;
        goto out;
    }
    head = (size_t)(p - desc) + 4;
    if (head > strlen(desc))
        head = strlen(desc);
    tail_len = strlen(tail);
    out = calloc(1, size + 32);
    if (!out) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(out, desc, head);
    out_len = head + (size_t)snprintf(out + head, 32, "%x\n", cid);
    if (out_len + tail_len > size) {
        r = -EINVAL;
        goto out;
    }
    memcpy(out + out_len, tail, tail_len);
    out_len += tail_len;
    if (s->desc_offset == 0) {
        r = blk_pwrite(bs->file, 0, out_len, out, 0);
        if (r == 0)
            r = blk_truncate(bs->file, out_len, false, BLK_PREALLOC_OFF, NULL);
    } else {
        r = blk_pwrite(bs->file, s->desc_offset, VMDK_DESC_SIZE, out, 0);
    }
    if (r == 0)
        s->cid = cid;
out:
    free(out);
    free(desc);
    return r;
}

int vmdk_node_cid(struct bds *bs, uint32_t *cid)
{
    if (bs->drv != &vmdk_driver)
        return -EINVAL;
    return read_cid(bs, false, cid);
}

bool vmdk_cid_valid(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    uint32_t cur;

    if (!s->cid_checked && bs->backing) {
        if (bs->backing->drv != &vmdk_driver)
            return false;
        if (read_cid(bs->backing, false, &cur) < 0 || cur != s->parent_cid)
            return false;
    }
    s->cid_checked = true;
    return true;
}

static int parent_open(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    char *desc = calloc(1, VMDK_DESC_SIZE + 1);
    const char *key = "parentFileNameHint";
    char *p, *end;
    int r;

    if (!desc)
        return -ENOMEM;
    r = blk_pread(bs->file, s->desc_offset, VMDK_DESC_SIZE, desc);
    if (r < 0)
        goto out;
    p = strstr(desc, key);
    if (!p)
        goto out;
    p += strlen(key);
    /* '=' and the opening quote */
    if (!p[0] || !p[1]) {
        r = -EINVAL;
        goto out;
    }
    p += 2;
    end = strchr(p, '"');
    if (!end || end - p > 4095) {
        r = -EINVAL;
        goto out;
    }
    bs->backing_file = strndup(p, (size_t)(end - p));
    bs->backing_format = strdup("vmdk");
    if (!bs->backing_file || !bs->backing_format)
        r = -ENOMEM;
out:
    free(desc);
    return r;
}

/* createType="..." : qemu's lookup by first occurrence. */
static int parse_description(const char *desc, const char *name, char *buf, size_t size)
{
    const char *p = strstr(desc, name), *end = desc + strlen(desc), *q;
    if (!p)
        return -1;
    p += strlen(name) + 2;
    if (p >= end)
        return -1;
    for (q = p; q < end && *q != '"'; q++)
        ;
    if (q == end || size < (size_t)(q - p) + 1)
        return -1;
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = 0;
    return 0;
}

static const char *next_line(const char *s)
{
    const char *nl = strchr(s, '\n');
    return nl ? nl + 1 : s + strlen(s);
}

static char *desc_dirname(const char *filename)
{
    const char *slash = strrchr(filename, '/');
    size_t n = slash ? (size_t)(slash - filename) + 1 : 0;
    return strndup(filename, n);
}

static int parse_extents(struct bds *bs, const char *desc, int depth, struct err *err)
{
    struct vmdk_state *s = bs->opaque;
    char *dir = NULL;
    const char *p;
    int r = 0;

    for (p = desc; *p; p = next_line(p)) {
        char access[11], type[11], fname[512];
        long long sectors = 0, flat_offset = -1;
        struct vmdk_extent *e = NULL;
        struct bds *file;
        char *path;
        int matches = sscanf(p, "%10s %lld %10s \"%511[^\n\r\"]\" %lld", access, &sectors, type,
                             fname, &flat_offset);
        if (matches < 4 || strcmp(access, "RW"))
            continue;
        if (!strcmp(type, "FLAT")) {
            if (matches != 5 || flat_offset < 0)
                goto invalid;
        } else if (!strcmp(type, "VMFS")) {
            if (matches != 4)
                goto invalid;
            flat_offset = 0;
        } else if (matches != 4) {
            goto invalid;
        }
        if (sectors <= 0 ||
            (strcmp(type, "FLAT") && strcmp(type, "SPARSE") && strcmp(type, "VMFS") &&
             strcmp(type, "VMFSSPARSE") && strcmp(type, "SESPARSE")))
            continue;
        if (fname[0] == '/') {
            path = strdup(fname);
        } else {
            if (!dir && !(dir = desc_dirname(bs->file->filename))) {
                r = -ENOMEM;
                goto out;
            }
            path = malloc(strlen(dir) + strlen(fname) + 1);
            if (path) {
                strcpy(path, dir);
                strcat(path, fname);
            }
        }
        if (!path) {
            r = -ENOMEM;
            goto out;
        }
        if (s->num_extents >= VMDK_MAX_EXTENTS) {
            free(path);
            r = err_set(err, EINVAL, "Too many extents (more than %d)", VMDK_MAX_EXTENTS);
            goto out;
        }
        file = blk_open_ref(bs->file->filename, path, "extent file", bs->flags & (BLK_O_RDWR | BLK_O_NOCACHE | BLK_O_SHARE |
                                                    BLK_O_NO_FLUSH), err);
        free(path);
        if (!file) {
            r = -EINVAL;
            goto out;
        }
        if (!strcmp(type, "FLAT") || !strcmp(type, "VMFS")) {
            r = vmdk_add_extent(bs, file, true, true, (uint64_t)sectors, 0, 0, 0, 0, 0, &e, err);
            if (r < 0) {
                blk_close(file);
                goto out;
            }
            if ((unsigned long long)flat_offset > (UINT64_MAX >> 9)) {
                r = err_set(err, EINVAL, "Invalid extent offset");
                goto out;
            }
            e->flat_start_offset = (uint64_t)flat_offset << 9;
        } else if (!strcmp(type, "SESPARSE")) {
            r = vmdk_open_sesparse(bs, file, bs->flags, err);
            if (r < 0) {
                blk_close(file);
                goto out;
            }
            e = &s->extents[s->num_extents - 1];
        } else {
            char *buf = vmdk_read_desc(file, 0, err);
            r = buf ? vmdk_open_sparse(bs, file, true, bs->flags, buf, depth, err) : -EINVAL;
            free(buf);
            if (r < 0) {
                blk_close(file);
                goto out;
            }
            e = &s->extents[s->num_extents - 1];
        }
        if (!(e->type = strdup(type))) {
            r = -ENOMEM;
            goto out;
        }
    }
    r = 0;
    goto out;
invalid: {
        const char *np = next_line(p);
        if (np > p && np[-1] == '\n')
            np--;
        r = err_set(err, EINVAL, "Invalid extent line: %.*s", (int)(np - p), p);
    }
out:
    free(dir);
    return r;
}

int vmdk_open_desc_file(struct bds *bs, int flags, const char *buf, int depth, struct err *err)
{
    static const char *const types[] = {
        "monolithicFlat", "vmfs", "vmfsSparse", "seSparse", "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
    };
    struct vmdk_state *s = bs->opaque;
    char ct[128];
    bool ok = false;
    (void)flags;

    if (parse_description(buf, "createType", ct, sizeof(ct)))
        return err_set(err, EINVAL, "invalid VMDK image descriptor");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        ok |= !strcmp(ct, types[i]);
    if (!ok)
        return err_set(err, ENOTSUP, "Unsupported image type '%s'", ct);
    free(s->create_type);
    if (!(s->create_type = strdup(ct)))
        return -ENOMEM;
    s->desc_offset = 0;
    return parse_extents(bs, buf, depth, err);
}

static void free_extents(struct vmdk_state *s)
{
    for (int i = 0; i < s->num_extents; i++)
        vmdk_extent_release(&s->extents[i]);
    free(s->extents);
    s->extents = NULL;
    s->num_extents = 0;
}

static int vmdk_open(struct bds *bs, struct kvopts *opts, int flags, struct err *err)
{
    struct vmdk_state *s = bs->opaque;
    char *buf;
    int r;
    (void)opts;

    buf = vmdk_read_desc(bs->file, 0, err);
    if (!buf)
        return -EINVAL;
    switch (get_be32(buf)) {
    case VMDK3_MAGIC:
    case VMDK4_MAGIC:
        r = vmdk_open_sparse(bs, bs->file, false, flags, buf, 0, err);
        s->desc_offset = 0x200;
        break;
    default:
        r = vmdk_open_desc_file(bs, flags, buf, 0, err);
        break;
    }
    if (r < 0)
        goto fail;
    if (s->num_extents == 0) {
        /* A descriptor without usable extent lines: nothing to map. */
        bs->total_size = 0;
    }
    r = parent_open(bs);
    if (r < 0)
        goto fail;
    r = read_cid(bs, false, &s->cid);
    if (r < 0)
        goto fail;
    r = read_cid(bs, true, &s->parent_cid);
    if (r < 0)
        goto fail;
    bs->request_alignment = 1;
    free(buf);
    return 0;
fail:
    free(buf);
    free(s->create_type);
    s->create_type = NULL;
    free(bs->backing_file);
    bs->backing_file = NULL;
    free(bs->backing_format);
    bs->backing_format = NULL;
    free_extents(s);
    return r;
}

static void vmdk_close(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    free_extents(s);
    free(s->create_type);
    s->create_type = NULL;
}

static struct vmdk_extent *find_extent(struct vmdk_state *s, uint64_t sector,
                                       struct vmdk_extent *hint)
{
    struct vmdk_extent *e = hint ? hint : s->extents;
    for (; s->extents && e < s->extents + s->num_extents; e++)
        if (sector < e->end_sector)
            return e;
    return NULL;
}

static uint64_t offset_in_cluster(const struct vmdk_extent *e, uint64_t offset)
{
    uint64_t begin = (e->end_sector - e->sectors) * VMDK_SECTOR;
    return (offset - begin) % (e->cluster_sectors * VMDK_SECTOR);
}

/* A read-only node's reads run without the node lock
 * (BLK_THREAD_READS_UNLOCKED_RO): the lock is taken here around the grain
 * lookup (grain table cache) and the parent CID check; grain reads and
 * inflating compressed grains (streamOptimized) run on the callers'
 * threads at once. */
static int vmdk_pread(struct bds *bs, uint64_t off, uint64_t len, void *buf)
{
    struct vmdk_state *s = bs->opaque;
    struct vmdk_extent *e = NULL;
    uint8_t *p = buf;

    while (len) {
        uint64_t cluster_offset = 0, in_cluster, n;
        int ret, r;
        bool cid_ok = true;

        blk_pread_lock(bs);
        e = find_extent(s, off >> 9, e);
        ret = e ? vmdk_get_cluster(bs, e, NULL, off, false, &cluster_offset, 0, 0) : VMDK_ERROR;
        if (e && ret != VMDK_OK && bs->backing && ret != VMDK_ZEROED)
            cid_ok = vmdk_cid_valid(bs);
        blk_pread_unlock(bs);
        if (!e)
            return -EIO;
        in_cluster = offset_in_cluster(e, off);
        n = min_u64(len, e->cluster_sectors * VMDK_SECTOR - in_cluster);
        if (ret != VMDK_OK) {
            if (bs->backing && ret != VMDK_ZEROED) {
                if (!cid_ok)
                    return -EINVAL;
                r = blk_read_backing(bs, off, n, p);
                if (r < 0)
                    return r;
            } else {
                memset(p, 0, (size_t)n);
            }
        } else if (e->compressed) {
            r = vmdk_read_compressed(e, cluster_offset, in_cluster, n, p);
            if (r < 0)
                return r;
        } else {
            r = blk_pread(e->file, cluster_offset + in_cluster, n, p);
            if (r < 0)
                return r;
        }
        off += n;
        len -= n;
        p += n;
    }
    return 0;
}

/* qemu's vmdk_pwritev: zeroed requests use zeroed-grain GTEs when every
 * grain is whole, else -ENOTSUP (the core then writes zero buffers). */
static int do_write(struct bds *bs, uint64_t off, uint64_t len, const uint8_t *buf, bool zeroed,
                    bool dry_run, const void *payload, long plen)
{
    struct vmdk_state *s = bs->opaque;
    struct vmdk_extent *e = NULL;
    int r;

    while (len) {
        struct vmdk_meta m = { 0 };
        uint64_t cluster_offset = 0, in_cluster, n, cluster_bytes;
        int ret;

        e = find_extent(s, off >> 9, e);
        if (!e)
            return -EIO;
        cluster_bytes = e->cluster_sectors * VMDK_SECTOR;
        in_cluster = offset_in_cluster(e, off);
        n = min_u64(len, cluster_bytes - in_cluster);
        ret = vmdk_get_cluster(bs, e, &m, off, !(e->compressed || zeroed), &cluster_offset,
                               in_cluster, in_cluster + n);
        if (e->compressed) {
            if (ret == VMDK_OK)
                return -EIO;    /* qemu: no rewriting of a streamOptimized grain */
            if (!zeroed) {
                /* Only whole grains, or the tail grain of the extent. */
                if (in_cluster || (n < cluster_bytes && off + n != e->end_sector * VMDK_SECTOR))
                    return -EINVAL;
                ret = vmdk_get_cluster(bs, e, &m, off, true, &cluster_offset, 0, 0);
            }
        }
        if (ret == VMDK_ERROR)
            return -EINVAL;
        if (zeroed) {
            if (!e->has_zero_grain || in_cluster || n < cluster_bytes)
                return -ENOTSUP;
            if (!dry_run && ret != VMDK_ZEROED) {
                if (ret == VMDK_UNALLOC && !m.l2_cache_entry)
                    return -EIO;
                if (vmdk_l2_update(e, &m, VMDK_GTE_ZEROED) < 0)
                    return -EIO;
            }
        } else {
            if (e->compressed)
                r = vmdk_write_compressed(e, cluster_offset, off, n, buf,
                                          n == len ? payload : NULL, plen, bs->compress_level);
            else
                r = blk_pwrite(e->file, cluster_offset + in_cluster, n, buf, 0);
            if (r < 0)
                return r;
            if (m.new_allocation) {
                if (cluster_offset / VMDK_SECTOR > UINT32_MAX ||
                    vmdk_l2_update(e, &m, (uint32_t)(cluster_offset / VMDK_SECTOR)) < 0)
                    return -EIO;
            }
            buf += n;
        }
        off += n;
        len -= n;
        if (!s->cid_updated && !dry_run) {
            r = write_cid(bs, random_u32());
            if (r < 0)
                return r;
            s->cid_updated = true;
        }
    }
    return 0;
}

static int vmdk_pwrite(struct bds *bs, uint64_t off, uint64_t len, const void *buf, int flags)
{
    (void)flags;
    return do_write(bs, off, len, buf, false, false, NULL, -1);
}

static long vmdk_compress(struct bds *bs, const void *buf, size_t len, void *dst, size_t cap)
{
    return vmdk_compress_grain(bs->compress_level, buf, len, dst, cap);
}

static int vmdk_pwrite_compressed(struct bds *bs, uint64_t off, uint64_t len, const void *buf,
                                  const void *payload, long plen)
{
    return do_write(bs, off, len, buf, false, false, payload, plen);
}

static int vmdk_pwrite_zeroes(struct bds *bs, uint64_t off, uint64_t len, int flags)
{
    (void)flags;
    int r = do_write(bs, off, len, NULL, true, true, NULL, -1);
    if (r == 0)
        r = do_write(bs, off, len, NULL, true, false, NULL, -1);
    return r;
}

static int vmdk_flush(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    int r = blk_flush(bs->file);
    for (int i = 0; r == 0 && i < s->num_extents; i++)
        if (s->extents[i].file != bs->file)
            r = blk_flush(s->extents[i].file);
    return r;
}

static int vmdk_block_status(struct bds *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, struct bds **file)
{
    struct vmdk_state *s = bs->opaque;
    struct vmdk_extent *e = find_extent(s, off >> 9, NULL);
    uint64_t cluster_offset = 0, in_cluster;
    int ret, st = 0;

    if (!e)
        return -EIO;
    ret = vmdk_get_cluster(bs, e, NULL, off, false, &cluster_offset, 0, 0);
    in_cluster = offset_in_cluster(e, off);
    *pnum = min_u64(e->cluster_sectors * VMDK_SECTOR - in_cluster, len);
    switch (ret) {
    case VMDK_ERROR:
        return -EIO;
    case VMDK_UNALLOC:
        return 0;
    case VMDK_ZEROED:
        return BLK_STATUS_ZERO;
    default:
        st = BLK_STATUS_DATA;
        *file = e->file;
        if (!e->compressed) {
            st |= BLK_STATUS_OFFSET_VALID;
            *map = cluster_offset + in_cluster;
            if (e->flat) {
                /* Like qemu's RECURSE: holes of the flat file read as zeros. */
                uint64_t fn = 0, fmap = 0;
                struct bds *ff = NULL;
                int fr = blk_block_status(e->file, *map, *pnum, &fn, &fmap, &ff);
                if (fr >= 0 && fn > 0) {
                    *pnum = min_u64(*pnum, fn);
                    if (fr & (BLK_STATUS_ZERO | BLK_STATUS_EOF))
                        st |= BLK_STATUS_ZERO;
                }
            }
        }
        return st;
    }
}

static bool type_eq(const struct vmdk_extent *a, const struct vmdk_extent *b)
{
    return a->flat == b->flat && a->compressed == b->compressed &&
           (a->flat || a->cluster_sectors == b->cluster_sectors);
}

static int vmdk_get_info(struct bds *bs, struct blk_info *bi)
{
    struct vmdk_state *s = bs->opaque;
    if (!s->num_extents)
        return -ENOTSUP;
    for (int i = 1; i < s->num_extents; i++)
        if (!type_eq(&s->extents[0], &s->extents[i]))
            return -ENOTSUP;
    bi->needs_compressed_writes = s->extents[0].compressed;
    if (!s->extents[0].flat)
        bi->cluster_size = s->extents[0].cluster_sectors * VMDK_SECTOR;
    return 0;
}

static json_t *vmdk_specific_info(struct bds *bs, struct err *err)
{
    struct vmdk_state *s = bs->opaque;
    json_t *data = json_object(), *list = json_array();
    (void)err;

    if (!data || !list) {
        json_decref(data);
        json_decref(list);
        return NULL;
    }
    json_object_set_new(data, "cid", json_integer(s->cid));
    json_object_set_new(data, "parent-cid", json_integer(s->parent_cid));
    json_object_set_new(data, "create-type", json_string(s->create_type ? s->create_type : ""));
    for (int i = 0; i < s->num_extents; i++) {
        struct vmdk_extent *e = &s->extents[i];
        json_t *x = json_object();
        if (!x)
            continue;
        if (e->compressed)
            json_object_set_new(x, "compressed", json_true());
        json_object_set_new(x, "virtual-size", json_integer((json_int_t)(e->sectors * VMDK_SECTOR)));
        json_object_set_new(x, "filename", json_string(e->file->filename));
        if (!e->flat)
            json_object_set_new(x, "cluster-size",
                                json_integer((json_int_t)(e->cluster_sectors * VMDK_SECTOR)));
        json_object_set_new(x, "format", json_string(e->type ? e->type : ""));
        json_array_append_new(list, x);
    }
    json_object_set_new(data, "extents", list);
    return data;
}

static int64_t vmdk_get_allocated_size(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    int64_t total = blk_get_allocated_size(bs->file);
    for (int i = 0; total >= 0 && i < s->num_extents; i++) {
        if (s->extents[i].file == bs->file)
            continue;
        int64_t r = blk_get_allocated_size(s->extents[i].file);
        if (r < 0)
            return r;
        total += r;
    }
    return total;
}

static bool vmdk_has_zero_init(struct bds *bs)
{
    struct vmdk_state *s = bs->opaque;
    for (int i = 0; i < s->num_extents; i++)
        if (s->extents[i].flat && !blk_has_zero_init(s->extents[i].file))
            return false;
    return true;
}

static int vmdk_check(struct bds *bs, struct blk_check_result *res, int fix, struct err *err)
{
    struct vmdk_state *s = bs->opaque;
    struct vmdk_extent *e = NULL;
    uint64_t total = bs->total_size / VMDK_SECTOR, sector = 0, cluster_offset;
    int r;
    if (fix)
        return err_set(err, ENOTSUP, "This image format does not support checks");
    for (;;) {
        if (sector >= total)
            return 0;
        e = find_extent(s, sector, e);
        if (!e) {
            blk_check_log(res, "ERROR: could not find extent for sector %llu",
                          (unsigned long long)sector);
            r = -EINVAL;
            break;
        }
        r = vmdk_get_cluster(bs, e, NULL, sector * VMDK_SECTOR, false, &cluster_offset, 0, 0);
        if (r == VMDK_ERROR) {
            blk_check_log(res, "ERROR: could not get cluster_offset for sector %llu",
                          (unsigned long long)sector);
            r = -EPERM;     /* qemu returns its internal VMDK_ERROR (-1) here */
            break;
        }
        if (r == VMDK_OK) {
            int64_t elen = blk_getlength(e->file);
            if (elen < 0) {
                blk_check_log(res, "ERROR: could not get extent file length for sector %llu",
                              (unsigned long long)sector);
                r = (int)elen;
                break;
            }
            if (cluster_offset >= (uint64_t)elen) {
                blk_check_log(res, "ERROR: cluster offset for sector %llu points after EOF",
                              (unsigned long long)sector);
                r = -EINVAL;
                break;
            }
        }
        if (r == VMDK_UNALLOC && !e->flat && !e->sesparse) {
            /* A zero L1 entry: none of its grains can point anywhere, so skip
             * to the next L1 entry instead of asking grain by grain (hostile
             * grain sizes make that billions of steps). */
            uint64_t base = e->end_sector - e->sectors;
            uint64_t l1_index = (sector - base) / e->l1_entry_sectors;
            if (l1_index < e->l1_size && !e->l1_table[l1_index]) {
                uint64_t next = base + (l1_index + 1) * e->l1_entry_sectors;
                sector = next > sector && next < e->end_sector ? next : e->end_sector;
                continue;
            }
        }
        sector += e->cluster_sectors;
    }
    res->corruptions++;
    return r;
}

const struct blk_driver vmdk_driver = {
    .name = "vmdk",
    .kind = BLK_KIND_FORMAT,
    .instance_size = sizeof(struct vmdk_state),
    .thread_model = BLK_THREAD_READS_UNLOCKED_RO,
    .supports_backing = true,
    .supports_compressed_writes = true,
    .create_opts = vmdk_create_opts,
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .create = vmdk_create,
    .pread = vmdk_pread,
    .pwrite = vmdk_pwrite,
    .pwrite_zeroes = vmdk_pwrite_zeroes,
    .compress = vmdk_compress,
    .pwrite_compressed = vmdk_pwrite_compressed,
    .flush = vmdk_flush,
    .block_status = vmdk_block_status,
    .get_allocated_size = vmdk_get_allocated_size,
    .get_info = vmdk_get_info,
    .specific_info = vmdk_specific_info,
    .check = vmdk_check,
    .has_zero_init = vmdk_has_zero_init,
};

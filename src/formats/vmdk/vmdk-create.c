/* Creating VMDK images — VMware "Virtual Disk Format 1.1": the descriptor
 * ("The Descriptor File", with its Disk Data Base), hosted sparse extents
 * (header, redundant and primary grain directories with their grain
 * tables laid out up front, grains appended later) and flat extents, for the
 * five subformats qemu 7.2 creates, with qemu's file naming
 * (x.vmdk, x-flat.vmdk, x-s001.vmdk / x-f001.vmdk) and 2 GiB split size.
 *
 * Layout arithmetic is qemu's, in 32 bits where qemu uses 32 bits, so the
 * result matches what qemu-img makes for the same options. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "formats/vmdk/vmdk.h"
#include "util/strbuf.h"

const struct opt_desc vmdk_create_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "adapter_type", OPT_STRING,
      "Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX", NULL },
    { "backing_file", OPT_STRING, "File name of a base image", NULL },
    { "backing_fmt", OPT_STRING, "Must be 'vmdk' if present", NULL },
    { "compat6", OPT_BOOL, "VMDK version 6 image", "off" },
    { "hwversion", OPT_STRING, "VMDK hardware version", "undefined" },
    { "toolsversion", OPT_STRING, "VMware guest tools version", NULL },
    { "subformat", OPT_STRING,
      "VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | "
      "twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ", NULL },
    { "zeroed_grain", OPT_BOOL, "Enable efficient zero writes using the zeroed-grain GTE feature",
      NULL },
    { NULL, 0, NULL, NULL },
};

enum subformat { SUB_MONO_SPARSE, SUB_MONO_FLAT, SUB_2GB_SPARSE, SUB_2GB_FLAT, SUB_STREAM };
static const char *const subformat_names[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
    "streamOptimized",
};
static const char *const adapter_names[] = { "ide", "buslogic", "lsilogic", "legacyESX" };

static int parse_enum(const char *v, const char *const *names, int n, int def, int *out,
                      struct err *err)
{
    if (!v) {
        *out = def;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    }
    return err_set(err, EINVAL, "invalid parameter value: %s", v);
}

/* Write the sparse header, size the file to the first grain and write both
 * grain directories (their grain tables are the zeros the file grew by). */
static int init_sparse(struct bds *f, uint64_t filesize, bool compress, bool zeroed_grain,
                       struct err *err)
{
    uint8_t h[512] = { 0 };
    uint32_t version = compress ? 3 : zeroed_grain ? 2 : 1;
    uint32_t flags = VMDK4_FLAG_RGD | VMDK4_FLAG_NL_DETECT |
                     (compress ? VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER : 0) |
                     (zeroed_grain ? VMDK4_FLAG_ZERO_GRAIN : 0);
    uint64_t capacity = filesize / VMDK_SECTOR, granularity = 128;
    uint32_t num_gtes = 512, grains, gt_size, gt_count, gd_sectors, tmp;
    uint64_t desc_offset = 1, desc_size = 20, rgd_offset, gd_offset, grain_offset;
    uint8_t *gd = NULL;
    int r;

    grains = (uint32_t)div_round_up_u64(capacity, granularity);
    gt_size = (uint32_t)div_round_up_u64((uint64_t)num_gtes * 4, VMDK_SECTOR);
    gt_count = (uint32_t)div_round_up_u64(grains, num_gtes);
    gd_sectors = (uint32_t)div_round_up_u64((uint64_t)gt_count * 4, VMDK_SECTOR);
    rgd_offset = desc_offset + desc_size;
    gd_offset = rgd_offset + gd_sectors + (uint64_t)gt_size * gt_count;
    grain_offset = align_up_u64(gd_offset + gd_sectors + (uint64_t)gt_size * gt_count,
                                granularity);

    put_be32(h, VMDK4_MAGIC);
    put_le32(h + 4, version);
    put_le32(h + 8, flags);
    put_le64(h + 12, capacity);
    put_le64(h + 20, granularity);
    put_le64(h + 28, desc_offset);
    put_le64(h + 36, desc_size);
    put_le32(h + 44, num_gtes);
    put_le64(h + 48, rgd_offset);
    put_le64(h + 56, gd_offset);
    put_le64(h + 64, grain_offset);
    h[73] = 0x0a;
    h[74] = 0x20;
    h[75] = 0x0d;
    h[76] = 0x0a;
    put_le16(h + 77, compress ? VMDK4_COMPRESSION_DEFLATE : 0);

    r = blk_pwrite(f, 0, 79, h, 0);
    if (r < 0)
        return err_set(err, -r, "An IO error has occurred");
    r = blk_truncate(f, grain_offset * VMDK_SECTOR, false, BLK_PREALLOC_OFF, err);
    if (r < 0)
        return r;
    gd = calloc(gd_sectors ? gd_sectors : 1, VMDK_SECTOR);
    if (!gd)
        return err_set(err, ENOMEM, "Could not allocate the grain directory");
    tmp = (uint32_t)(rgd_offset + gd_sectors);
    for (uint32_t i = 0; i < gt_count; i++, tmp += gt_size)
        put_le32(gd + (size_t)i * 4, tmp);
    r = blk_pwrite(f, rgd_offset * VMDK_SECTOR, (uint64_t)gd_sectors * VMDK_SECTOR, gd, 0);
    if (r < 0) {
        r = err_set(err, -r, "An IO error has occurred");
        goto out;
    }
    tmp = (uint32_t)(gd_offset + gd_sectors);
    for (uint32_t i = 0; i < gt_count; i++, tmp += gt_size)
        put_le32(gd + (size_t)i * 4, tmp);
    r = blk_pwrite(f, gd_offset * VMDK_SECTOR, (uint64_t)gd_sectors * VMDK_SECTOR, gd, 0);
    if (r < 0)
        r = err_set(err, -r, "An IO error has occurred");
out:
    free(gd);
    return r;
}

/* Create one file; *out gets it opened read-write when out is non-NULL. */
static int create_extent(const char *filename, struct kvopts *opts, uint64_t size, bool flat,
                         bool compress, bool zeroed_grain, bool desc_only, struct bds **out,
                         struct err *err)
{
    struct bds *f;
    int r = blk_create_file(filename, opts, err);
    if (r < 0)
        return r;
    f = blk_open_protocol(filename, BLK_O_RDWR, err);
    if (!f)
        return -EIO;
    if (desc_only)
        r = 0;
    else if (flat)
        r = blk_truncate(f, size, false, BLK_PREALLOC_OFF, err);
    else
        r = init_sparse(f, size, compress, zeroed_grain, err);
    if (r < 0 || !out)
        blk_close(f);
    else
        *out = f;
    return r;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int vmdk_create(const char *filename, struct kvopts *opts, struct err *err)
{
    const char *backing_fmt = kvopts_get(opts, "backing_fmt");
    const char *backing_file = kvopts_get(opts, "backing_file");
    const char *hw_version = kvopts_get(opts, "hwversion");
    const char *toolsversion = kvopts_get(opts, "toolsversion");
    char *path = NULL, *prefix = NULL, *postfix = NULL, *name = NULL, *desc = NULL;
    char parent_line[4200] = "";
    struct strbuf ext;
    struct bds *descf = NULL;
    uint64_t size, created = 0, extent_size;
    uint32_t parent_cid = 0xffffffff, heads = 16, cid = 0;
    bool compat6, zeroed_grain, flat, split, compress;
    int adapter = 0, sub = 0, r, idx;
    const char *p, *q;

    strbuf_init(&ext);
    if (backing_fmt && strcmp(backing_fmt, "vmdk"))
        return err_set(err, EINVAL, "backing_file must be a vmdk image");
    if (!filename || !filename[0])
        return err_set(err, EINVAL, "No filename provided");
    p = strrchr(filename, '/');
    if (!p)
        p = strrchr(filename, '\\');
    if (!p)
        p = strrchr(filename, ':');
    p = p ? p + 1 : filename;
    q = strrchr(p, '.');
    path = strndup(filename, (size_t)(p - filename));
    prefix = q ? strndup(p, (size_t)(q - p)) : strdup(p);
    postfix = strdup(q ? q : "");
    if (!path || !prefix || !postfix) {
        r = -ENOMEM;
        goto out;
    }

    if ((r = kvopts_get_size(opts, "size", 0, &size, err)) < 0 ||
        (r = kvopts_get_bool(opts, "compat6", false, &compat6, err)) < 0 ||
        (r = kvopts_get_bool(opts, "zeroed_grain", false, &zeroed_grain, err)) < 0)
        goto out;
    if (size > (uint64_t)INT64_MAX - 511) {
        r = err_set(err, EFBIG, "Image size too big");
        goto out;
    }
    size = align_up_u64(size, VMDK_SECTOR);
    if (hw_version && !strcmp(hw_version, "undefined"))
        hw_version = NULL;
    if ((r = parse_enum(kvopts_get(opts, "adapter_type"), adapter_names, 4, 0, &adapter, err)) < 0 ||
        (r = parse_enum(kvopts_get(opts, "subformat"), subformat_names, 5, SUB_MONO_SPARSE, &sub,
                        err)) < 0)
        goto out;

    if (compat6) {
        if (hw_version) {
            r = err_set(err, EINVAL, "compat6 cannot be enabled with hwversion set");
            goto out;
        }
        hw_version = "6";
    }
    if (!hw_version)
        hw_version = "4";
    if (!toolsversion)
        toolsversion = "2147483647";
    if (adapter != 0)
        heads = 255;
    split = sub == SUB_2GB_FLAT || sub == SUB_2GB_SPARSE;
    flat = sub == SUB_MONO_FLAT || sub == SUB_2GB_FLAT;
    compress = sub == SUB_STREAM;
    if (flat && backing_file) {
        r = err_set(err, ENOTSUP, "Flat image can't have backing file");
        goto out;
    }
    if (flat && zeroed_grain) {
        r = err_set(err, ENOTSUP, "Flat image can't enable zeroed grain");
        goto out;
    }

    extent_size = split ? 0x80000000ULL : size;
    created = (!split && !flat) ? extent_size : 0;
    name = malloc(strlen(path) + strlen(prefix) + strlen(postfix) + 16);
    if (!name) {
        r = -ENOMEM;
        goto out;
    }
    sprintf(name, "%s%s%s", path, prefix, postfix);
    r = create_extent(name, opts, created, false, compress, zeroed_grain, split || flat, &descf,
                      err);
    if (r < 0)
        goto out;
    if (!split && !flat)
        strbuf_addf(&ext, "RW %llu SPARSE \"%s\"\n",
                    (unsigned long long)(created / VMDK_SECTOR), base_name(name));

    if (backing_file) {
        char *full = blk_resolve_backing(filename, backing_file);
        struct bds *b;
        if (!full) {
            r = -ENOMEM;
            goto out;
        }
        b = blk_open(full, NULL, NULL, BLK_O_NO_BACKING | BLK_O_SHARE, err);
        free(full);
        if (!b) {
            r = -EIO;
            goto out;
        }
        if (strcmp(blk_driver_name(b->drv), "vmdk")) {
            r = err_set(err, EINVAL, "Invalid backing file format: %s. Must be vmdk",
                        blk_driver_name(b->drv));
            blk_close(b);
            goto out;
        }
        r = vmdk_node_cid(b, &parent_cid);
        blk_close(b);
        if (r < 0) {
            r = err_set(err, -r, "Failed to read parent CID");
            goto out;
        }
        snprintf(parent_line, sizeof(parent_line), "parentFileNameHint=\"%s\"", backing_file);
    }

    for (idx = 1; created < size; idx++) {
        uint64_t cur = min_u64(size - created, extent_size);
        if (split)
            sprintf(name, "%s%s-%c%03d%s", path, prefix, flat ? 'f' : 's', idx, postfix);
        else
            sprintf(name, "%s%s-flat%s", path, prefix, postfix);
        r = create_extent(name, opts, cur, flat, compress, zeroed_grain, false, NULL, err);
        if (r < 0) {
            r = -EINVAL;
            goto out;
        }
        strbuf_addf(&ext, flat ? "RW %llu FLAT \"%s\" 0\n" : "RW %llu SPARSE \"%s\"\n",
                    (unsigned long long)div_round_up_u64(cur, VMDK_SECTOR), base_name(name));
        created += cur;
    }

    if (getrandom(&cid, sizeof(cid), 0) != sizeof(cid))
        cid = (uint32_t)random();
    struct strbuf d;
    strbuf_init(&d);
    strbuf_addf(&d,
                "# Disk DescriptorFile\n"
                "version=1\n"
                "CID=%x\n"
                "parentCID=%x\n"
                "createType=\"%s\"\n"
                "%s"
                "\n"
                "# Extent description\n"
                "%s"
                "\n"
                "# The Disk Data Base\n"
                "#DDB\n"
                "\n"
                "ddb.virtualHWVersion = \"%s\"\n"
                "ddb.geometry.cylinders = \"%lld\"\n"
                "ddb.geometry.heads = \"%u\"\n"
                "ddb.geometry.sectors = \"63\"\n"
                "ddb.adapterType = \"%s\"\n"
                "ddb.toolsVersion = \"%s\"\n",
                cid, parent_cid, subformat_names[sub], parent_line, strbuf_str(&ext), hw_version,
                (long long)(size / (63ULL * heads * VMDK_SECTOR)), heads, adapter_names[adapter],
                toolsversion);
    desc = strbuf_detach(&d);
    {
        size_t len = strlen(desc);
        uint64_t at = (!split && !flat) ? 0x200 : 0;
        r = blk_pwrite(descf, at, len, desc, 0);
        if (r < 0) {
            r = err_set_errno(err, -r, "Could not write description");
            goto out;
        }
        if (at == 0)
            r = blk_truncate(descf, len, false, BLK_PREALLOC_OFF, err);
        if (r == 0)
            /* As qemu, which flushes at close and drops the error: a failing
             * flush does not fail the create. */
            blk_flush(descf);
    }
out:
    if (descf)
        blk_close(descf);
    strbuf_release(&ext);
    free(desc);
    free(name);
    free(path);
    free(prefix);
    free(postfix);
    return r < 0 ? r : 0;
}

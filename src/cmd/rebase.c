/* qemu-img rebase: change an image's backing file. Safe mode first copies
 * into the image every range whose content differs between the old and the
 * new backing file (where the image itself does not allocate it), so the
 * guest-visible content never changes; -u only rewrites the link. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/progress.h"
#include "util/ckd.h"

#define IO_BUF_SIZE (2u << 20)
#define SECTOR 512

/* Sector-granular: 1 if the first sector differs; *pnum = length of the run
 * with the same verdict. */
static int compare_sectors(const uint8_t *a, const uint8_t *b, uint64_t bytes, uint64_t *pnum)
{
    uint64_t i = min_u64(bytes, SECTOR);
    bool res = memcmp(a, b, i) != 0;

    while (i < bytes) {
        uint64_t len = min_u64(bytes - i, SECTOR);
        if ((memcmp(a + i, b + i, len) != 0) != res)
            break;
        i += len;
    }
    *pnum = i;
    return res;
}

/* A node of bs's backing chain whose file is the same as path, or NULL. */
static struct bds *find_in_chain(struct bds *bs, const char *path)
{
    for (struct bds *b = bs->backing; b; b = b->backing) {
        if (!strcmp(b->filename, path))
            return b;
    }
    return NULL;
}

int cmd_rebase(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback", *src_cache = "writeback";
    const char *out_basefmt = NULL, *out_baseimg = NULL;
    bool unsafe = false, progress = false, quiet = false, image_opts = false, force_share = false;
    int c, flags, src_flags = 0, ret = 1;
    struct bds *bs = NULL, *new_backing = NULL, *prefix = NULL;
    uint8_t *buf_old = NULL, *buf_new = NULL;
    struct err e;

    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt = optarg; break;
        case 'F': out_basefmt = optarg; break;
        case 'b': out_baseimg = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 't': cache = optarg; break;
        case 'T': src_cache = optarg; break;
        case 'q': quiet = true; break;
        case 'U': force_share = true; break;
        case 256:
            if (object_add(optarg) < 0)
                return 1;
            break;
        case 257: image_opts = true; break;
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    if (!unsafe && !out_baseimg)
        error_exit("Must specify backing file (-b) or use unsafe mode (-u)");
    const char *filename = argv[optind];
    progress_init(progress, 2.0f);
    progress_print(0, 100);
    err_init(&e);

    flags = BLK_O_RDWR | (unsafe ? BLK_O_NO_BACKING : 0);
    if (parse_cache_mode(cache, &flags) < 0) {
        error_report("Invalid cache option: %s", cache);
        goto out;
    }
    if (parse_cache_mode(src_cache, &src_flags) < 0) {
        error_report("Invalid source cache option: %s", src_cache);
        goto out;
    }
    struct img_open_args a = { .filename = filename, .fmt = fmt, .image_opts = image_opts,
                               .flags = flags, .quiet = quiet };
    bs = img_open(&a);
    if (!bs)
        goto out;
    if (out_basefmt && !blk_find_format(out_basefmt)) {
        error_report("Invalid format name: '%s'", out_basefmt);
        goto out;
    }
    if (!unsafe && out_baseimg[0]) {
        char *real = blk_resolve_backing(bs->filename, out_baseimg);
        prefix = find_in_chain(bs, real);
        if (!prefix) {
            new_backing = blk_open(real, out_basefmt, NULL,
                                   src_flags | (force_share ? BLK_O_SHARE : 0), &e);
            if (!new_backing) {
                error_report("Could not open new backing file '%s': %s", out_baseimg, e.msg);
                free(real);
                goto out;
            }
        }
        free(real);
    }

    if (!unsafe) {
        struct bds *old_backing = bs->backing;
        struct bds *nb = prefix ? prefix : new_backing;
        int64_t size = blk_getlength(bs);
        int64_t old_size = 0, new_size = 0;
        float local_progress = 0;

        if (size < 0) {
            error_report("Could not get size of '%s': %s", filename, strerror((int)-size));
            goto out;
        }
        if (old_backing && (old_size = blk_getlength(old_backing)) < 0) {
            error_report("Could not get size of '%s': %s", bs->backing_file,
                         strerror((int)-old_size));
            goto out;
        }
        if (nb && (new_size = blk_getlength(nb)) < 0) {
            error_report("Could not get size of '%s': %s", out_baseimg, strerror((int)-new_size));
            goto out;
        }
        buf_old = malloc(IO_BUF_SIZE);
        buf_new = malloc(IO_BUF_SIZE);
        if (!buf_old || !buf_new) {
            error_report("Could not allocate buffers");
            goto out;
        }
        if (size != 0)
            local_progress = 100.0f / (float)(size / (int64_t)min_u64((uint64_t)size, IO_BUF_SIZE));

        uint64_t n;
        for (uint64_t off = 0; off < (uint64_t)size; off += n) {
            bool old_is_zero = false;
            n = min_u64(IO_BUF_SIZE, (uint64_t)size - off);
            /* Ranges the image allocates itself keep their content. */
            int r = blk_is_allocated_above(bs, bs->backing, off, n, &n);
            if (r < 0) {
                error_report("error while reading image metadata: %s", strerror(-r));
                goto out;
            }
            if (r)
                continue;
            if (prefix) {
                uint64_t bytes = n;
                r = old_backing ? blk_is_allocated_above(old_backing, prefix, off, n, &n) : 0;
                if (r < 0) {
                    error_report("error while reading image metadata: %s", strerror(-r));
                    goto out;
                }
                if (!r && n)
                    continue;
                if (!n)
                    n = bytes;
            }
            if ((int64_t)off >= old_size) {
                memset(buf_old, 0, n);
                old_is_zero = true;
            } else {
                if ((int64_t)(off + n) > old_size)
                    n = (uint64_t)old_size - off;
                if (blk_pread(old_backing, off, n, buf_old) < 0) {
                    error_report("error while reading from old backing file");
                    goto out;
                }
            }
            if ((int64_t)off >= new_size || !nb) {
                memset(buf_new, 0, n);
            } else {
                if ((int64_t)(off + n) > new_size)
                    n = (uint64_t)new_size - off;
                if (blk_pread(nb, off, n, buf_new) < 0) {
                    error_report("error while reading from new backing file");
                    goto out;
                }
            }
            for (uint64_t done = 0; done < n;) {
                uint64_t pnum;
                if (compare_sectors(buf_old + done, buf_new + done, n - done, &pnum)) {
                    int w = old_is_zero ? blk_pwrite_zeroes(bs, off + done, pnum, 0)
                                        : blk_pwrite(bs, off + done, pnum, buf_old + done, 0);
                    if (w < 0) {
                        error_report("Error while writing to COW image: %s", strerror(-w));
                        goto out;
                    }
                }
                done += pnum;
            }
            progress_print(local_progress, 100);
        }
    }

    int r;
    if (out_baseimg && out_baseimg[0] && !out_basefmt) {
        r = -EINVAL;
    } else {
        err_init(&e);
        r = blk_change_backing(bs, out_baseimg && out_baseimg[0] ? out_baseimg : NULL,
                               out_baseimg && out_baseimg[0] ? out_basefmt : NULL, &e);
    }
    if (r == -ENOSPC)
        error_report("Could not change the backing file to '%s': No space left in the file header",
                     out_baseimg);
    else if (r == -EINVAL && out_baseimg && !out_basefmt)
        error_report("Could not change the backing file to '%s': backing format must be specified",
                     out_baseimg);
    else if (r < 0)
        error_report("Could not change the backing file to '%s': %s",
                     out_baseimg ? out_baseimg : "(null)", strerror(-r));
    progress_print(100, 0);
    if (r == 0 && blk_flush(bs) < 0)
        r = -EIO;
    ret = r < 0 ? 1 : 0;
out:
    progress_end();
    free(buf_old);
    free(buf_new);
    if (new_backing)
        blk_close(new_backing);
    if (bs)
        blk_close(bs);
    return ret;
}

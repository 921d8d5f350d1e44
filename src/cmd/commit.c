/* qemu-img commit: write the data the top image (and any image between it
 * and the base) allocates into the base, growing the base if the top is
 * larger, then empty the top unless -d or -b. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/progress.h"
#include "util/ckd.h"

#define COMMIT_BUF (2u << 20)
#define COMMIT_PROGRESS_CHUNK (16u << 20)

static bool same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (!strcmp(a, b))
        return true;
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

static struct bds *find_backing_image(struct bds *bs, const char *name)
{
    for (struct bds *b = bs->backing; b; b = b->backing)
        if (same_file(b->filename, name))
            return b;
    return NULL;
}

/* Copy every range allocated above base into base. */
static int commit_data(struct bds *top, struct bds *base, struct err *err)
{
    int64_t size = blk_getlength(top);
    int64_t base_size = blk_getlength(base);
    uint8_t *buf = NULL;
    uint64_t n;
    int r = 0;

    if (size < 0 || base_size < 0)
        return err_set(err, EIO, "Could not get the image sizes");
    if (base_size < size) {
        r = blk_truncate(base, (uint64_t)size, false, BLK_PREALLOC_OFF, err);
        if (r < 0)
            return r;
    }
    /* qemu's commit job reports progress as the share of the bytes
     * allocated above the base that has been copied so far. */
    uint64_t total = 0, done_bytes = 0;
    for (uint64_t off = 0; off < (uint64_t)size; off += n) {
        int st = blk_block_status_above(top, base, off, (uint64_t)size - off, &n, NULL, NULL, NULL);
        if (st < 0 || n == 0)
            break;
        if (st & BLK_STATUS_ALLOCATED)
            total += n;
    }
    buf = malloc(COMMIT_BUF);
    if (!buf)
        return err_set(err, ENOMEM, "Could not allocate buffer");
    for (uint64_t off = 0; off < (uint64_t)size; off += n) {
        uint64_t map;
        struct bds *file;
        int depth;
        int st = blk_block_status_above(top, base, off, (uint64_t)size - off, &n, &map, &file, &depth);
        if (st < 0) {
            r = err_set(err, -st, "Could not read the block status: %s", strerror(-st));
            break;
        }
        if (n == 0)
            break;
        if (!(st & BLK_STATUS_ALLOCATED))
            continue;
        if ((st & BLK_STATUS_ZERO) && !(st & BLK_STATUS_DATA)) {
            r = blk_pwrite_zeroes(base, off, n, BLK_WRITE_MAY_UNMAP);
        } else {
            for (uint64_t done = 0; done < n && r >= 0;) {
                uint64_t len = min_u64(n - done, COMMIT_BUF);
                r = blk_pread(top, off + done, len, buf);
                if (r >= 0)
                    r = blk_pwrite(base, off + done, len, buf, 0);
                done += len;
            }
        }
        if (r < 0) {
            /* qemu's commit job fails the whole job with this prefix */
            r = err_set(err, -r, "Block job failed: %s", strerror(-r));
            break;
        }
        /* qemu's job reports a chunk of its 16 MiB buffer once copied: a
         * smaller commit goes from 0 straight to 100 */
        if (total && (done_bytes + n) / COMMIT_PROGRESS_CHUNK != done_bytes / COMMIT_PROGRESS_CHUNK)
            progress_print((float)(100.0 * (double)(done_bytes + n) / (double)total), 0);
        done_bytes += n;
    }
    if (r == 0)
        progress_print(100.f, 0);
    free(buf);
    if (r == 0 && (r = blk_flush(base)) < 0)
        err_set(err, -r, "Block job failed: %s", strerror(-r));
    return r;
}

int cmd_commit(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback", *base = NULL;
    bool progress = false, quiet = false, drop = false, image_opts = false;
    int c, flags = BLK_O_RDWR;
    struct err e;

    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'b': base = optarg; drop = true; break;
        case 'd': drop = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 'r':
            if (cvtnum("rate limit", optarg) < 0)
                return 1;
            break;
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
    const char *filename = argv[optind];
    if (parse_cache_mode(cache, &flags) < 0) {
        error_report("Invalid cache option: %s", cache);
        return 1;
    }
    struct img_open_args a = { .filename = filename, .fmt = fmt, .image_opts = image_opts,
                               .flags = flags, .quiet = quiet };
    struct bds *bs = img_open(&a);
    if (!bs)
        return 1;
    progress_init(progress, 1.f);
    progress_print(0.f, 100);
    err_init(&e);

    struct bds *base_bs;
    if (base) {
        base_bs = find_backing_image(bs, base);
        if (!base_bs) {
            err_set(&e, ENOENT, "Did not find '%s' in the backing chain of '%s'", base, filename);
            goto done;
        }
    } else {
        base_bs = bs->backing;
        if (!base_bs) {
            err_set(&e, EINVAL, "Image does not have a backing file");
            goto done;
        }
    }
    if (blk_reopen(base_bs, BLK_O_RDWR | (flags & ~BLK_O_RDWR), &e) < 0)
        goto done;
    if (commit_data(bs, base_bs, &e) < 0)
        goto done;
    if (!drop) {
        int r = blk_make_empty(bs, &e);
        if (r == -ENOTSUP)
            err_init(&e);
        else if (r < 0)
            goto done;
    }
    if (blk_flush(bs) < 0)
        err_set(&e, EIO, "Could not flush the image");
done:
    progress_end();
    blk_close(bs);
    if (e.set) {
        error_report("%s", e.msg);
        return 1;
    }
    if (!quiet)
        printf("Image committed.\n");
    return 0;
}

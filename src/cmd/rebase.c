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
#include "engine/copy.h"
#include "util/ckd.h"

#define IO_BUF_SIZE (2u << 20)

/* Reads and comparisons on a few threads (writes stay in order): the work
 * is memory copies and compares over the page cache, so about the CPUs.
 * The engine lowers this to keep its buffers within qemu-img's memory
 * (rebase_run). */
#define REBASE_WORKERS 4

static void rebase_progress(void *opaque)
{
    progress_print(*(float *)opaque, 100);
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
        if (size != 0)
            local_progress = 100.0f / (float)(size / (int64_t)min_u64((uint64_t)size, IO_BUF_SIZE));

        struct rebase_job job = {
            .bs = bs, .prefix = prefix, .new_backing = nb,
            .size = (uint64_t)size, .old_size = (uint64_t)old_size,
            .new_size = (uint64_t)new_size, .buf_size = IO_BUF_SIZE,
            .workers = REBASE_WORKERS,
            .step_done = rebase_progress, .opaque = &local_progress,
        };
        err_init(&e);
        if (rebase_run(&job, &e) < 0) {
            error_report("%s", e.msg);
            goto out;
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
    if (new_backing)
        blk_close(new_backing);
    if (bs)
        blk_close(bs);
    return ret;
}

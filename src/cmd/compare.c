/* qemu-img compare: are two images' guest-visible contents the same?
 * Exit codes as qemu-img 7.2: 0 identical, 1 different, 2 an image could
 * not be opened (or a bad option value), 3 block status failed, 4 a read
 * failed. The walk itself lives in engine/compare.c; this file parses the
 * command line, opens the images and prints qemu-img's messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/progress.h"
#include "engine/compare.h"

struct progress_ctx {
    uint64_t base;      /* the larger size: 100% */
};

static void on_progress(void *opaque, uint64_t bytes)
{
    const struct progress_ctx *p = opaque;
    /* the same float arithmetic as qemu-img */
    progress_print(((float)bytes / (float)p->base) * 100, 100);
}

/* Print the outcome of an engine pass; returns the exit code, or -1 when
 * the images are identical so far. */
static int report(const struct compare_result *res, const char *const names[2], bool quiet)
{
    switch (res->kind) {
    case COMPARE_IDENTICAL:
        return -1;
    case COMPARE_CONTENT_MISMATCH:
        if (!quiet)
            printf("Content mismatch at offset %llu!\n", (unsigned long long)res->offset);
        return 1;
    case COMPARE_STATUS_MISMATCH:
        if (!quiet)
            printf("Strict mode: Offset %llu block status mismatch!\n",
                   (unsigned long long)res->offset);
        return 1;
    case COMPARE_STATUS_ERROR:
        error_report("Sector allocation test failed for %s", names[res->which]);
        return 3;
    case COMPARE_READ_ERROR:
        error_report("Error while reading offset %llu of %s: %s",
                     (unsigned long long)res->offset, names[res->which], strerror(res->err));
        return 4;
    }
    return 4;
}

int cmd_compare(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt[2] = { NULL, NULL }, *cache = "writeback", *names[2];
    bool progress = false, quiet = false, strict = false, image_opts = false;
    bool force_share = false;
    struct bds *bs[2] = { NULL, NULL };
    struct compare_job job;
    struct compare_result res;
    struct progress_ctx pc;
    int64_t size[2];
    int c, flags = 0, ret;

    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt[0] = optarg; break;
        case 'F': fmt[1] = optarg; break;
        case 'T': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': force_share = true; break;
        case 256:
            if (object_add(optarg) < 0)
                exit(2);
            break;
        case 257: image_opts = true; break;
        }
    }
    if (quiet)
        progress = false;
    if (optind != argc - 2)
        error_exit("Expecting two image file names");
    names[0] = argv[optind];
    names[1] = argv[optind + 1];

    progress_init(progress, 2.0f);
    if (parse_cache_mode(cache, &flags) < 0) {
        error_report("Invalid source cache option: %s", cache);
        ret = 2;
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        struct img_open_args a = {
            .filename = names[i], .fmt = fmt[i], .image_opts = image_opts, .quiet = quiet,
            .flags = flags | (force_share ? BLK_O_SHARE : 0),
        };
        bs[i] = img_open(&a);
        if (!bs[i]) {
            ret = 2;
            goto out;
        }
    }
    for (int i = 0; i < 2; i++) {
        size[i] = blk_getlength(bs[i]);
        if (size[i] < 0) {
            error_report("Can't get size of %s: %s", names[i], strerror((int)-size[i]));
            ret = 4;
            goto out;
        }
    }
    pc.base = (uint64_t)(size[0] > size[1] ? size[0] : size[1]);
    progress_print(0, 100);
    if (strict && size[0] != size[1]) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        ret = 1;
        goto out;
    }

    memset(&job, 0, sizeof(job));
    job.bs[0] = bs[0];
    job.bs[1] = bs[1];
    job.size[0] = (uint64_t)size[0];
    job.size[1] = (uint64_t)size[1];
    job.strict = strict;
    job.progress = on_progress;
    job.opaque = &pc;
    if (compare_common(&job, &res) < 0) {
        error_report("Could not allocate the comparison buffers");
        ret = 4;
        goto out;
    }
    if ((ret = report(&res, names, quiet)) >= 0)
        goto out;
    if (size[0] != size[1]) {
        if (!quiet)
            printf("Warning: Image size mismatch!\n");
        if (compare_tail(&job, &res) < 0) {
            error_report("Could not allocate the comparison buffers");
            ret = 4;
            goto out;
        }
        if ((ret = report(&res, names, quiet)) >= 0)
            goto out;
    }
    if (!quiet)
        printf("Images are identical.\n");
    ret = 0;
out:
    if (bs[1])
        blk_close(bs[1]);
    if (bs[0])
        blk_close(bs[0]);
    progress_end();
    return ret;
}

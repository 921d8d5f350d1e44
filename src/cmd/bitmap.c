/* qemu-img bitmap: add, remove, clear, enable, disable and merge
 * persistent dirty bitmaps, applied in command-line order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/ckd.h"
#include "util/xalloc.h"

enum bitmap_act { BM_ADD, BM_REMOVE, BM_CLEAR, BM_ENABLE, BM_DISABLE, BM_MERGE };

struct action {
    enum bitmap_act act;
    const char *src;
};

static const char *const act_names[] = { "add", "remove", "clear", "enable", "disable", "merge" };

int cmd_bitmap(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "add", no_argument, NULL, 258 },
        { "remove", no_argument, NULL, 259 },
        { "clear", no_argument, NULL, 260 },
        { "enable", no_argument, NULL, 261 },
        { "disable", no_argument, NULL, 262 },
        { "merge", required_argument, NULL, 263 },
        { "granularity", required_argument, NULL, 'g' },
        { "source-file", required_argument, NULL, 'b' },
        { "source-format", required_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *src_fmt = NULL, *src_filename = NULL;
    bool image_opts = false, add = false, merge = false;
    int64_t granularity = 0;
    struct action *acts = NULL;
    size_t nacts = 0;
    struct bds *bs = NULL, *src = NULL;
    int c, ret = 1;

    while ((c = getopt_long(argc, argv, ":b:f:F:g:h", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'b': src_filename = optarg; break;
        case 'f': fmt = optarg; break;
        case 'F': src_fmt = optarg; break;
        case 'g':
            granularity = cvtnum("granularity", optarg);
            if (granularity < 0) {
                free(acts);
                return 1;
            }
            break;
        case 256:
            if (object_add(optarg) < 0)
                goto out;
            break;
        case 257: image_opts = true; break;
        default:
            if (c >= 258 && c <= 263) {
                acts = xrealloc(acts, (nacts + 1) * sizeof(*acts));
                acts[nacts].act = (enum bitmap_act)(c - 258);
                acts[nacts].src = c == 263 ? optarg : NULL;
                nacts++;
                add |= c == 258;
                merge |= c == 263;
            }
            break;
        }
    }
    if (!nacts) {
        error_report("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
        goto out;
    }
    if (granularity && !add) {
        error_report("granularity only supported with --add");
        goto out;
    }
    if (src_fmt && !src_filename) {
        error_report("-F only supported with -b");
        goto out;
    }
    if (src_filename && !merge) {
        error_report("Merge bitmap source file only supported with --merge");
        goto out;
    }
    if (optind != argc - 2) {
        error_report("Expecting filename and bitmap name");
        goto out;
    }
    const char *filename = argv[optind], *bitmap = argv[optind + 1];
    struct img_open_args a = { .filename = filename, .fmt = fmt, .image_opts = image_opts,
                               .flags = BLK_O_RDWR | BLK_O_NO_BACKING };
    bs = img_open(&a);
    if (!bs)
        goto out;
    if (src_filename) {
        struct img_open_args sa = { .filename = src_filename, .fmt = src_fmt,
                                    .flags = BLK_O_NO_BACKING };
        src = img_open(&sa);
        if (!src)
            goto out;
    }
    for (size_t i = 0; i < nacts; i++) {
        struct err e;
        int r = 0;
        err_init(&e);
        switch (acts[i].act) {
        case BM_ADD: {
            /* qemu passes the granularity as a uint32 (higher bits dropped) */
            uint32_t g = (uint32_t)granularity;
            if (granularity && (g < 512 || !is_pow2_u64(g))) {
                r = err_set(&e, EINVAL, "Granularity must be power of 2 and at least 512");
                break;
            }
            if (!*bitmap) {
                r = err_set(&e, EINVAL, "Bitmap name cannot be empty");
                break;
            }
            r = blk_bitmap_add(bs, bitmap, g, false, &e);
            break;
        }
        case BM_REMOVE: r = blk_bitmap_remove(bs, bitmap, &e); break;
        case BM_CLEAR: r = blk_bitmap_clear(bs, bitmap, &e); break;
        case BM_ENABLE: r = blk_bitmap_enable(bs, bitmap, true, &e); break;
        case BM_DISABLE: r = blk_bitmap_enable(bs, bitmap, false, &e); break;
        case BM_MERGE: r = blk_bitmap_merge(bs, bitmap, src ? src : bs, acts[i].src, &e); break;
        }
        if (r < 0) {
            error_report("Operation %s on bitmap %s failed: %s", act_names[acts[i].act], bitmap,
                         e.set ? e.msg : strerror(-r));
            goto out;
        }
    }
    ret = 0;
out:
    if (src)
        blk_close(src);
    if (bs)
        blk_close(bs);
    free(acts);
    return ret;
}

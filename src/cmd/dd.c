/* qemu-img dd: copy an image (or part of one) into a newly created image,
 * with dd(1)-style operands if= of= bs= count= skip=, as qemu-img 7.2's
 * img_dd. Like qemu, the output is created with the input's size limited by
 * count*bs, minus skip*bs, and every byte is written (no sparse detection:
 * the output ends up fully allocated, as qemu's does). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/ckd.h"
#include "util/size.h"
#include "util/xalloc.h"

/* Largest piece read and written at once; a large bs= is split, which
 * changes neither the bytes written nor their positions. */
#define DD_MAX_BUF (4u << 20)

enum { DD_BS = 1, DD_COUNT = 2, DD_IF = 4, DD_OF = 8, DD_SKIP = 16 };

struct dd_args {
    unsigned flags;
    int64_t bs, count, skip;
    const char *in, *out;
};

/* qemu-img's cvtnum_full: a size with suffixes, within [min, max]. */
static int64_t cvtnum_range(const char *name, const char *value, int64_t min, int64_t max)
{
    uint64_t v;
    int r = size_parse(value, 'B', &v);

    if (r < 0 && r != -ERANGE) {
        error_report("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    if (r == -ERANGE || v > (uint64_t)max || v < (uint64_t)min) {
        error_report("Invalid %s specified. Must be between %lld and %lld.", name,
                     (long long)min, (long long)max);
        return -1;
    }
    return (int64_t)v;
}

static int dd_bs(const char *v, struct dd_args *d)
{
    d->bs = cvtnum_range("bs", v, 1, INT_MAX);
    return d->bs < 0 ? -1 : 0;
}

static int dd_count(const char *v, struct dd_args *d)
{
    d->count = cvtnum("count", v);
    return d->count < 0 ? -1 : 0;
}

static int dd_if(const char *v, struct dd_args *d)
{
    d->in = v;
    return 0;
}

static int dd_of(const char *v, struct dd_args *d)
{
    d->out = v;
    return 0;
}

static int dd_skip(const char *v, struct dd_args *d)
{
    d->skip = cvtnum("skip", v);
    return d->skip < 0 ? -1 : 0;
}

static const struct dd_operand {
    const char *name;
    int (*parse)(const char *value, struct dd_args *d);
    unsigned flag;
} operands[] = {
    { "bs", dd_bs, DD_BS },
    { "count", dd_count, DD_COUNT },
    { "if", dd_if, DD_IF },
    { "of", dd_of, DD_OF },
    { "skip", dd_skip, DD_SKIP },
};

static int parse_operand(const char *arg, struct dd_args *d)
{
    const char *eq = strchr(arg, '=');
    size_t klen;

    if (!eq) {
        error_report("unrecognized operand %s", arg);
        return -1;
    }
    klen = (size_t)(eq - arg);
    for (size_t i = 0; i < sizeof(operands) / sizeof(operands[0]); i++) {
        if (strlen(operands[i].name) == klen && !strncmp(arg, operands[i].name, klen)) {
            if (operands[i].parse(eq + 1, d) < 0)
                return -1;
            d->flags |= operands[i].flag;
            return 0;
        }
    }
    error_report("unrecognized operand %.*s", (int)klen, arg);
    return -1;
}

int cmd_dd(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct dd_args d = { .bs = 512 };
    const char *out_fmt = "raw", *fmt = NULL;
    bool image_opts = false, force_share = false, skip_past_end;
    struct bds *in = NULL, *out = NULL;
    struct kvopts opts;
    struct err e;
    uint8_t *buf = NULL;
    int64_t size, in_pos, out_pos, skip_bytes = 0;
    int c, ret = 1;

    kvopts_init(&opts);
    err_init(&e);
    while ((c = getopt_long(argc, argv, ":hf:O:U", long_options, NULL)) != -1) {
        switch (c) {
        case 'O': out_fmt = optarg; break;
        case 'f': fmt = optarg; break;
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'U': force_share = true; break;
        case 256:
            if (object_add(optarg) < 0)
                exit(1);
            break;
        case 257: image_opts = true; break;
        }
    }
    for (int i = optind; i < argc; i++)
        if (parse_operand(argv[i], &d) < 0)
            goto out;
    if (!((d.flags & DD_IF) && (d.flags & DD_OF))) {
        error_report("Must specify both input and output files");
        goto out;
    }

    struct img_open_args ia = {
        .filename = d.in, .fmt = fmt, .image_opts = image_opts,
        .flags = force_share ? BLK_O_SHARE : 0,
    };
    in = img_open(&ia);
    if (!in)
        goto out;

    const struct blk_driver *drv = blk_find_format(out_fmt);
    if (!drv) {
        error_report("Unknown file format");
        goto out;
    }
    const struct blk_driver *proto = blk_find_protocol(d.out, &e);
    if (!proto) {
        error_report("%s", e.msg);
        goto out;
    }
    if (!blk_driver_create_opts(drv)) {
        error_report("Format driver '%s' does not support image creation", out_fmt);
        goto out;
    }
    if (!blk_driver_create_opts(proto)) {
        error_report("Protocol driver '%s' does not support image creation",
                     blk_driver_name(proto));
        goto out;
    }

    size = blk_getlength(in);
    if (size < 0) {
        error_report("Failed to get size for '%s'", d.in);
        goto out;
    }
    if ((d.flags & DD_COUNT) && d.count <= INT64_MAX / d.bs && d.count * d.bs < size)
        size = d.count * d.bs;
    /* A skip beyond the input (or one that overflows) gives an empty output. */
    skip_past_end = (d.flags & DD_SKIP) && (d.skip > INT64_MAX / d.bs || size < d.bs * d.skip);
    if (!skip_past_end && (d.flags & DD_SKIP))
        skip_bytes = d.bs * d.skip;

    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)(skip_past_end ? 0 : size - skip_bytes));
    kvopts_set(&opts, "size", num);
    if (blk_create(out_fmt, d.out, &opts, &e) < 0) {
        error_report("%s: error while creating output image: %s", d.out, e.msg);
        goto out;
    }

    struct img_open_args oa = {
        .filename = d.out, .fmt = out_fmt, .flags = BLK_O_RDWR | BLK_O_NO_BACKING,
    };
    out = img_open(&oa);
    if (!out)
        goto out;

    if (skip_past_end) {
        error_report("%s: cannot skip to specified offset", d.in);
        in_pos = size;
    } else {
        in_pos = skip_bytes;
    }

    uint64_t buf_size = min_u64((uint64_t)d.bs, DD_MAX_BUF);
    buf = xmalloc(buf_size);
    ret = 0;
    for (out_pos = 0; in_pos < size;) {
        uint64_t n = min_u64(buf_size, (uint64_t)(size - in_pos));
        int r = blk_pread(in, (uint64_t)in_pos, n, buf);

        if (r < 0) {
            error_report("error while reading from input image file: %s", strerror(-r));
            ret = 1;
            goto out;
        }
        in_pos += (int64_t)n;
        r = blk_pwrite(out, (uint64_t)out_pos, n, buf, 0);
        if (r < 0) {
            error_report("error while writing to output image file: %s", strerror(-r));
            ret = 1;
            goto out;
        }
        out_pos += (int64_t)n;
    }
    /* qemu flushes when it drops the image and does not report failure */
    (void)blk_flush(out);
out:
    free(buf);
    if (out)
        blk_close(out);
    if (in)
        blk_close(in);
    kvopts_release(&opts);
    return ret;
}

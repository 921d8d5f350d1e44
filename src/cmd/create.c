/* qemu-img create: option merging and checks as bdrv_img_create does them,
 * then the driver's create. A create that fails removes what it made. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "cmd/createopts.h"
#include "util/xalloc.h"

int img_create_common(const char *filename, const char *fmt, const char *base_filename,
                      const char *base_fmt, struct kvopts *opts, int64_t img_size,
                      bool unsafe, bool quiet, struct err *err)
{
    const struct blk_driver *drv = blk_find_format(fmt);
    struct create_opts co;
    char line[8192];
    int r;

    if (!drv)
        return err_set(err, EINVAL, "Unknown file format '%s'", fmt);
    if (!blk_driver_can_create(drv))
        return err_set(err, ENOTSUP, "Format driver '%s' does not support image creation", fmt);
    const struct blk_driver *proto = create_find_protocol(filename, err);
    if (!proto)
        return err && err->code ? -err->code : -EINVAL;
    if (!blk_driver_can_create(proto))
        return err_set(err, ENOTSUP, "Protocol driver '%s' does not support image creation",
                       blk_driver_name(proto));
    create_opts_merge(&co, drv, filename);
    if ((r = create_opts_validate(&co, opts, err)) < 0)
        return r;
    if (kvopts_has(opts, "size") && img_size >= 0)
        return err_set(err, EINVAL, "The image size must be specified only once");
    if (!kvopts_has(opts, "size") && img_size >= 0) {
        char num[32];
        snprintf(num, sizeof(num), "%lld", (long long)img_size);
        kvopts_set(opts, "size", num);
    }
    if (base_filename) {
        bool ok = false;
        for (size_t i = 0; i < co.n; i++)
            ok |= !strcmp(co.desc[i]->name, "backing_file");
        if (!ok)
            return err_set(err, ENOTSUP, "Backing file not supported for file format '%s'", fmt);
        kvopts_set(opts, "backing_file", base_filename);
    }
    if (base_fmt) {
        bool ok = false;
        for (size_t i = 0; i < co.n; i++)
            ok |= !strcmp(co.desc[i]->name, "backing_fmt");
        if (!ok)
            return err_set(err, ENOTSUP, "Backing file format not supported for file format '%s'", fmt);
        kvopts_set(opts, "backing_fmt", base_fmt);
    }
    const char *backing = kvopts_get(opts, "backing_file");
    const char *bfmt = kvopts_get(opts, "backing_fmt");
    if (backing && !strcmp(filename, backing))
        return err_set(err, EINVAL, "Error: Trying to create an image with the same filename as the backing file");
    /* qemu 7.2 opens the backing file (probing without -F) unless -u:
     * to check it, to refuse a missing -F naming the probed format, and
     * to take the size from it. */
    if (backing && backing[0] && unsafe && !bfmt)
        return err_set(err, EINVAL, "Backing file specified without backing format");
    if (backing && backing[0] && !unsafe) {
        char *full = blk_resolve_backing(filename, backing);
        struct err e2;
        err_init(&e2);
        struct bds *b = blk_open(full, bfmt, NULL, BLK_O_NO_BACKING | BLK_O_SHARE, &e2);
        free(full);
        if (!b)
            return err_set(err, e2.code ? e2.code : EIO, "%s\nCould not open backing image.",
                           e2.msg);
        if (!bfmt) {
            r = err_set(err, EINVAL, "Backing file specified without backing format\n"
                        "Detected format of %s.", blk_driver_name(b->drv));
            err->no_newline = true;
            blk_close(b);
            return r;
        }
        if (!kvopts_has(opts, "size")) {
            char num[32];
            snprintf(num, sizeof(num), "%lld", (long long)blk_getlength(b));
            kvopts_set(opts, "size", num);
        }
        blk_close(b);
    }
    if (!kvopts_has(opts, "size"))
        return err_set(err, EINVAL, "Image creation needs a size parameter");
    if (!quiet) {
        snprintf(line, sizeof(line), "Formatting '%s', fmt=%s", filename, fmt);
        create_opts_format_line(&co, opts, line, sizeof(line));
        printf("%s\n", line);
        fflush(stdout);
    }
    return blk_create(fmt, filename, opts, err);
}

int cmd_create(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 'o' + 256 },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = "raw", *base_fmt = NULL, *base_filename = NULL;
    char *options = NULL;
    bool quiet = false, unsafe = false;
    int64_t img_size = -1;
    int c, ret = 1;
    struct kvopts opts;
    struct err e;

    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'F': base_fmt = optarg; break;
        case 'b': base_filename = optarg; break;
        case 'f': fmt = optarg; break;
        case 'o': {
            if (!kvopts_list_valid(optarg)) {
                error_report("Invalid option list: %s", optarg);
                free(options);
                return 1;
            }
            char *n = options ? xasprintf("%s,%s", options, optarg) : xstrdup(optarg);
            free(options);
            options = n;
            break;
        }
        case 'q': quiet = true; break;
        case 'u': unsafe = true; break;
        case 'o' + 256:
            if (object_add(optarg) < 0)
                return 1;
            break;
        }
    }
    kvopts_init(&opts);
    err_init(&e);
    int perr = options ? kvopts_parse(&opts, options, NULL, &e) : 0;
    if (opts.help) {
        ret = create_opts_print_help(fmt, optind < argc ? argv[optind] : NULL);
        goto out;
    }
    if (optind >= argc)
        error_exit("Expecting image file name");
    const char *filename = argv[optind++];
    if (optind < argc) {
        img_size = cvtnum("image size", argv[optind++]);
        if (img_size < 0)
            goto out;
    }
    if (optind != argc)
        error_exit("Unexpected argument: %s", argv[optind]);
    if (perr < 0) {
        error_report("%s: %s", filename, e.msg);
        goto out;
    }

    struct stat st;
    bool existed = stat(filename, &st) == 0;
    if (img_create_common(filename, fmt, base_filename, base_fmt, &opts, img_size, unsafe,
                          quiet, &e) < 0) {
        if (e.no_newline) {
            fflush(stdout);
            fprintf(stderr, "%s: %s: %s", prog_name, filename, e.msg);
        } else {
            error_report("%s: %s", filename, e.msg);
        }
        goto out;
    }
    (void)existed;
    ret = 0;
out:
    kvopts_release(&opts);
    free(options);
    return ret;
}

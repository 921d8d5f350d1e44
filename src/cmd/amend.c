/* qemu-img amend: change format options of an existing image through the
 * driver's amend operation, with qemu-img's option checking (an option that
 * only exists for creation gets qemu's hint). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/createopts.h"
#include "cmd/progress.h"
#include "util/xalloc.h"

/* qemu-img's amend_status_cb: the driver's progress, as a percentage. */
static void amend_status(void *opaque, int64_t offset, int64_t total)
{
    (void)opaque;
    progress_print(100.f * (float)offset / (float)total, 0);
}

static int print_amend_help(const char *fmt)
{
    const struct blk_driver *drv = blk_find_format(fmt);
    const struct opt_desc *t;
    const struct opt_desc *desc[CREATE_OPTS_MAX];
    size_t n = 0;

    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    t = blk_driver_amend_opts(drv);
    if (!t) {
        error_report("Format driver '%s' does not support option amendment", fmt);
        return 1;
    }
    printf("Amend options for '%s':\n", fmt);
    for (; t->name && n < CREATE_OPTS_MAX; t++)
        desc[n++] = t;
    opts_print_sorted(desc, n);
    return 0;
}

int cmd_amend(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "force", no_argument, NULL, 258 },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *cache = "writeback";
    char *options = NULL;
    bool quiet = false, progress = false, image_opts = false, force = false;
    int c, ret = 1, flags = BLK_O_RDWR;
    struct bds *bs = NULL;
    struct kvopts opts;
    struct err e;

    kvopts_init(&opts);
    err_init(&e);
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'o': {
            char *n;
            if (!kvopts_list_valid(optarg)) {
                error_report("Invalid option list: %s", optarg);
                goto out_no_progress;
            }
            n = options ? xasprintf("%s,%s", options, optarg) : xstrdup(optarg);
            free(options);
            options = n;
            break;
        }
        case 'f': fmt = optarg; break;
        case 't': cache = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 256:
            if (object_add(optarg) < 0)
                goto out_no_progress;
            break;
        case 257: image_opts = true; break;
        case 258: force = true; break;
        }
    }
    if (!options)
        error_exit("Must specify options (-o)");
    if (quiet)
        progress = false;
    progress_init(progress, 1.0f);
    int perr = kvopts_parse(&opts, options, NULL, &e);
    if (fmt && opts.help) {
        ret = print_amend_help(fmt);
        goto out;
    }
    if (optind != argc - 1) {
        error_report("Expecting one image file name");
        goto out;
    }
    if (parse_cache_mode(cache, &flags) < 0) {
        error_report("Invalid cache option: %s", cache);
        goto out;
    }
    struct img_open_args a = { .filename = argv[argc - 1], .fmt = fmt, .image_opts = image_opts,
                               .flags = flags, .quiet = quiet };
    bs = img_open(&a);
    if (!bs)
        goto out;
    fmt = blk_driver_name(bs->drv);
    if (opts.help) {
        ret = print_amend_help(fmt);
        goto out;
    }
    const struct opt_desc *amend = blk_driver_amend_opts(bs->drv);
    if (!amend) {
        error_report("Format driver '%s' does not support option amendment", fmt);
        goto out;
    }
    if (perr < 0) {
        error_report("%s", e.msg);
        goto out;
    }
    {
        struct create_opts co = { .n = 0 };
        for (const struct opt_desc *t = amend; t->name && co.n < CREATE_OPTS_MAX; t++)
            co.desc[co.n++] = t;
        if (create_opts_validate(&co, &opts, &e) < 0) {
            struct create_opts all;
            struct err e2;
            create_opts_merge(&all, bs->drv, NULL);
            err_init(&e2);
            for (size_t i = 0; i < co.n && all.n < CREATE_OPTS_MAX; i++)
                all.desc[all.n++] = co.desc[i];
            if (create_opts_validate(&all, &opts, &e2) == 0)
                error_report("%s\nThis option is only supported for image creation", e.msg);
            else
                error_report("%s", e.msg);
            goto out;
        }
    }
    /* In case the driver reports no progress of its own. */
    progress_print(0.f, 0);
    err_init(&e);
    int r = blk_amend(bs, &opts, force, amend_status, NULL, &e);
    progress_print(100.f, 0);
    if (r < 0) {
        error_report("%s", e.set ? e.msg : strerror(-r));
        goto out;
    }
    if ((r = blk_flush(bs)) < 0) {
        error_report("Failed to flush the image: %s", strerror(-r));
        goto out;
    }
    ret = 0;
out:
    progress_end();
out_no_progress:
    if (bs)
        blk_close(bs);
    kvopts_release(&opts);
    free(options);
    return ret;
}

/* qemu-img measure: how big a new image of the output format would be, for
 * a given virtual size (--size) or to hold an existing image's data, as
 * qemu-img 7.2's img_measure. The numbers come from the output driver's
 * measure operation (blk_measure); this file checks the argument
 * combinations in qemu's order and prints BlockMeasureInfo, human or JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/qjson.h"
#include "util/strbuf.h"
#include "util/xalloc.h"

/* -l snapshot.id=...,snapshot.name=...: qemu's internal_snapshot_opts. */
static int parse_snapshot_opts(const char *arg, struct kvopts *so)
{
    struct err e;

    err_init(&e);
    if (kvopts_parse(so, arg, NULL, &e) < 0) {
        error_report("%s", e.msg);
        return -1;
    }
    for (size_t i = 0; i < so->n; i++) {
        if (strcmp(so->v[i].key, "snapshot.id") && strcmp(so->v[i].key, "snapshot.name")) {
            error_report("Invalid parameter '%s'", so->v[i].key);
            return -1;
        }
    }
    return 0;
}

static int load_snapshot(struct bds *bs, const struct kvopts *so, const char *name)
{
    struct err e;
    int r;

    err_init(&e);
    if (so) {
        r = blk_snapshot_load_tmp(bs, kvopts_get(so, "snapshot.id"),
                                  kvopts_get(so, "snapshot.name"), &e);
    } else {
        r = blk_snapshot_load_tmp(bs, name, NULL, &e);
        if (r == -ENOENT || r == -EINVAL) {
            err_init(&e);
            r = blk_snapshot_load_tmp(bs, NULL, name, &e);
        }
    }
    if (r < 0) {
        error_report("Failed to load snapshot: %s", e.msg);
        return -1;
    }
    return 0;
}

static void print_json(const struct blk_measure *m)
{
    json_t *o = json_object();
    struct strbuf sb = STRBUF_INIT;

    /* BlockMeasureInfo field order; the emitter orders them as qemu. */
    json_object_set_new(o, "required", json_integer((json_int_t)m->required));
    json_object_set_new(o, "fully-allocated", json_integer((json_int_t)m->fully_allocated));
    if (m->has_bitmaps)
        json_object_set_new(o, "bitmaps", json_integer((json_int_t)m->bitmaps));
    qjson_pretty(&sb, o);
    printf("%s\n", strbuf_str(&sb));
    strbuf_release(&sb);
    json_decref(o);
}

int cmd_measure(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 256 },
        { "object", required_argument, NULL, 257 },
        { "output", required_argument, NULL, 258 },
        { "size", required_argument, NULL, 259 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *filename = NULL, *fmt = NULL, *out_fmt = "raw", *snapshot_name = NULL;
    char *options = NULL;
    bool force_share = false, image_opts = false, have_sn_opts = false;
    bool have_size = false;
    uint64_t img_size = 0;
    enum output_format of = OFORMAT_HUMAN;
    struct kvopts opts, sn_opts;
    struct bds *in = NULL;
    struct blk_measure info;
    struct err e;
    int c, ret = 1;

    kvopts_init(&opts);
    kvopts_init(&sn_opts);
    err_init(&e);
    /* No leading ':' here: qemu-img lets getopt print its own complaint
     * and then shows the help text. */
    while ((c = getopt_long(argc, argv, "hf:O:o:l:U", long_options, NULL)) != -1) {
        switch (c) {
        case '?':
        case 'h':
            help();
        case 'f': fmt = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'o':
            if (!kvopts_list_valid(optarg)) {
                error_report("Invalid option list: %s", optarg);
                goto out;
            }
            if (options) {
                char *n = xasprintf("%s,%s", options, optarg);
                free(options);
                options = n;
            } else {
                options = xstrdup(optarg);
            }
            break;
        case 'l':
            if (!strncmp(optarg, "snapshot.", 9)) {
                kvopts_release(&sn_opts);
                kvopts_init(&sn_opts);
                if (parse_snapshot_opts(optarg, &sn_opts) < 0) {
                    error_report("Failed in parsing snapshot param '%s'", optarg);
                    goto out;
                }
                have_sn_opts = true;
            } else {
                snapshot_name = optarg;
            }
            break;
        case 'U': force_share = true; break;
        case 256: image_opts = true; break;
        case 257:
            if (object_add(optarg) < 0)
                exit(1);
            break;
        case 258:
            if (strcmp(optarg, "json") && strcmp(optarg, "human")) {
                error_report("--output must be used with human or json as argument.");
                goto out;
            }
            of = strcmp(optarg, "json") ? OFORMAT_HUMAN : OFORMAT_JSON;
            break;
        case 259: {
            int64_t v = cvtnum("image size", optarg);
            if (v < 0)
                goto out;
            img_size = (uint64_t)v;
            have_size = true;
            break;
        }
        }
    }

    if (argc - optind > 1) {
        error_report("At most one filename argument is allowed.");
        goto out;
    } else if (argc - optind == 1) {
        filename = argv[optind];
    }
    if (!filename && (image_opts || fmt || snapshot_name || have_sn_opts)) {
        error_report("--image-opts, -f, and -l require a filename argument.");
        goto out;
    }
    if (filename && have_size) {
        error_report("--size N cannot be used together with a filename.");
        goto out;
    }
    if (!filename && !have_size) {
        error_report("Either --size N or one filename must be specified.");
        goto out;
    }

    if (filename) {
        struct img_open_args a = {
            .filename = filename, .fmt = fmt, .image_opts = image_opts,
            .flags = force_share ? BLK_O_SHARE : 0,
        };
        in = img_open(&a);
        if (!in)
            goto out;
        if ((have_sn_opts || snapshot_name) &&
            load_snapshot(in, have_sn_opts ? &sn_opts : NULL, snapshot_name) < 0)
            goto out;
    }

    const struct blk_driver *drv = blk_find_format(out_fmt);
    if (!drv) {
        error_report("Unknown file format '%s'", out_fmt);
        goto out;
    }
    if (!blk_driver_create_opts(drv)) {
        error_report("Format driver '%s' does not support image creation", out_fmt);
        goto out;
    }
    if (options) {
        const struct blk_driver *file = blk_find_format("file");
        const struct opt_desc *tables[3] = {
            blk_driver_create_opts(drv), file ? blk_driver_create_opts(file) : NULL, NULL,
        };
        if (kvopts_parse(&opts, options, NULL, &e) < 0 ||
            kvopts_validate(&opts, tables, &e) < 0) {
            error_report("%s", e.msg);
            error_report("Invalid options for file format '%s'", out_fmt);
            goto out;
        }
    }
    if (have_size) {
        char num[32];
        snprintf(num, sizeof(num), "%llu", (unsigned long long)img_size);
        kvopts_set(&opts, "size", num);
    }

    err_init(&e);
    if (blk_measure(drv, &opts, in, img_size, &info, &e) < 0) {
        error_report("%s", e.msg);
        goto out;
    }
    if (of == OFORMAT_HUMAN) {
        printf("required size: %llu\n", (unsigned long long)info.required);
        printf("fully allocated size: %llu\n", (unsigned long long)info.fully_allocated);
        if (info.has_bitmaps)
            printf("bitmaps size: %llu\n", (unsigned long long)info.bitmaps);
    } else {
        print_json(&info);
    }
    ret = 0;
out:
    if (in)
        blk_close(in);
    kvopts_release(&opts);
    kvopts_release(&sn_opts);
    free(options);
    return ret;
}

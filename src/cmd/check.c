/* qemu-img check: consistency check and repair, human or JSON, with
 * qemu-img's exit codes (0 clean, 1 check failed, 2 corruptions, 3 leaks,
 * 63 no check support). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/qjson.h"
#include "util/strbuf.h"

struct image_check {
    struct blk_check_result r;
    const char *filename;
    const char *format;
};

static int collect(struct bds *bs, struct image_check *c, const char *filename, int fix,
                   bool *unsupported)
{
    struct err e;
    int r;

    memset(&c->r, 0, sizeof(c->r));
    c->r.log = log_to_stderr;
    c->filename = filename;
    c->format = blk_driver_name(bs->drv);
    err_init(&e);
    r = blk_check(bs, &c->r, fix, &e);
    if (r == -ENOTSUP && !strcmp(e.msg, "This image format does not support checks")) {
        *unsupported = true;
        error_report("%s", e.msg);
        return r;
    }
    if (r < 0 && e.set)
        error_report("%s", e.msg);
    return r;
}

static void dump_human(const struct image_check *c, bool quiet)
{
    const struct blk_check_result *r = &c->r;
    if (quiet)
        return;
    if (r->corruptions == 0 && r->leaks == 0 && r->check_errors == 0) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%lld errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   (long long)r->corruptions);
        if (r->leaks)
            printf("\n%lld leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", (long long)r->leaks);
        if (r->check_errors)
            printf("\n%lld internal errors have occurred during the check.\n",
                   (long long)r->check_errors);
    }
    if (r->total_clusters != 0 && r->allocated_clusters != 0)
        printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
               (unsigned long long)r->allocated_clusters, (unsigned long long)r->total_clusters,
               (double)r->allocated_clusters * 100.0 / (double)r->total_clusters,
               (double)r->fragmented_clusters * 100.0 / (double)r->allocated_clusters,
               (double)r->compressed_clusters * 100.0 / (double)r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %lld\n", (long long)r->image_end_offset);
}

static void dump_json(const struct image_check *c, bool quiet)
{
    const struct blk_check_result *r = &c->r;
    json_t *o = json_object();
    struct strbuf sb = STRBUF_INIT;

    json_object_set_new(o, "filename", json_string(c->filename));
    json_object_set_new(o, "format", json_string(c->format));
    json_object_set_new(o, "check-errors", json_integer(r->check_errors));
    if (r->image_end_offset)
        json_object_set_new(o, "image-end-offset", json_integer(r->image_end_offset));
    if (r->corruptions)
        json_object_set_new(o, "corruptions", json_integer(r->corruptions));
    if (r->leaks)
        json_object_set_new(o, "leaks", json_integer(r->leaks));
    if (r->corruptions_fixed)
        json_object_set_new(o, "corruptions-fixed", json_integer(r->corruptions_fixed));
    if (r->leaks_fixed)
        json_object_set_new(o, "leaks-fixed", json_integer(r->leaks_fixed));
    if (r->total_clusters)
        json_object_set_new(o, "total-clusters", json_integer((json_int_t)r->total_clusters));
    if (r->allocated_clusters)
        json_object_set_new(o, "allocated-clusters", json_integer((json_int_t)r->allocated_clusters));
    if (r->fragmented_clusters)
        json_object_set_new(o, "fragmented-clusters", json_integer((json_int_t)r->fragmented_clusters));
    if (r->compressed_clusters)
        json_object_set_new(o, "compressed-clusters", json_integer((json_int_t)r->compressed_clusters));
    qjson_pretty(&sb, o);
    if (!quiet)
        printf("%s\n", strbuf_str(&sb));
    strbuf_release(&sb);
    json_decref(o);
}

int cmd_check(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "output", required_argument, NULL, 'O' + 256 },
        { "object", required_argument, NULL, 'o' + 256 },
        { "image-opts", no_argument, NULL, 'i' + 256 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL, *cache = "writeback";
    bool quiet = false, image_opts = false, force_share = false;
    int fix = 0, c, flags = BLK_O_CHECK;
    enum output_format ofmt;

    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt = optarg; break;
        case 'r':
            flags |= BLK_O_RDWR;
            if (!strcmp(optarg, "leaks"))
                fix = BLK_FIX_LEAKS;
            else if (!strcmp(optarg, "all"))
                fix = BLK_FIX_LEAKS | BLK_FIX_ERRORS;
            else
                error_exit("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
            break;
        case 'O' + 256: output = optarg; break;
        case 'T': cache = optarg; break;
        case 'q': quiet = true; break;
        case 'U': force_share = true; break;
        case 'i' + 256: image_opts = true; break;
        case 'o' + 256:
            if (object_add(optarg) < 0)
                return 1;
            break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    const char *filename = argv[optind];
    if (parse_output_format(output, &ofmt) < 0)
        return 1;
    if (parse_cache_mode(cache, &flags) < 0) {
        error_report("Invalid source cache option: %s", cache);
        return 1;
    }
    if (force_share)
        flags |= BLK_O_SHARE;

    struct img_open_args a = { .filename = filename, .fmt = fmt, .image_opts = image_opts,
                               .flags = flags, .quiet = quiet };
    struct bds *bs = img_open(&a);
    if (!bs)
        return 1;

    struct image_check chk;
    bool unsupported = false;
    int ret = collect(bs, &chk, filename, fix, &unsupported);
    if (unsupported) {
        blk_close(bs);
        return 63;
    }
    if (ret == 0 && (chk.r.corruptions_fixed || chk.r.leaks_fixed)) {
        int64_t lf = chk.r.leaks_fixed, cf = chk.r.corruptions_fixed;
        if (ofmt == OFORMAT_HUMAN && !quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %lld leaked clusters\n    %lld corruptions\n\n"
                   "Double checking the fixed image now...\n", (long long)lf, (long long)cf);
        ret = collect(bs, &chk, filename, 0, &unsupported);
        chk.r.leaks_fixed = lf;
        chk.r.corruptions_fixed = cf;
    }
    if (ret == 0) {
        if (ofmt == OFORMAT_HUMAN)
            dump_human(&chk, quiet);
        else
            dump_json(&chk, quiet);
    }
    if (ret || chk.r.check_errors) {
        if (ret)
            error_report("Check failed: %s", strerror(-ret));
        else
            error_report("Check failed");
        ret = 1;
    } else if (chk.r.corruptions) {
        ret = 2;
    } else if (chk.r.leaks) {
        ret = 3;
    }
    blk_close(bs);
    return ret;
}

/* qemu-img info: ImageInfo of one image or of its backing chain, human or
 * JSON. Images are opened without their backing files, as qemu-img does, so
 * a missing backing file does not stop info. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cmd.h"
#include "cmd/imageinfo.h"
#include "util/qjson.h"
#include "util/size.h"
#include "util/strbuf.h"
#include "util/xalloc.h"

json_t *image_info_json(struct bds *bs, struct err *err)
{
    json_t *o = json_object();
    struct blk_info bi;
    int64_t size = blk_getlength(bs);
    int64_t actual = blk_get_allocated_size(bs);
    struct blk_snapshot *sn = NULL;
    int nsn;

    if (size < 0) {
        err_set_errno(err, (int)-size, "Can't get image size '%s'", bs->filename);
        json_decref(o);
        return NULL;
    }
    /* Keys inserted in QAPI ImageInfo order; the emitter orders them as qemu. */
    json_object_set_new(o, "filename", json_string(bs->filename));
    json_object_set_new(o, "format", json_string(blk_driver_name(bs->drv)));
    int r = blk_get_info(bs, &bi);
    if (r == 0 && bi.has_dirty_flag)
        json_object_set_new(o, "dirty-flag", json_boolean(bi.is_dirty));
    if (actual >= 0)
        json_object_set_new(o, "actual-size", json_integer(actual));
    json_object_set_new(o, "virtual-size", json_integer(size));
    if (r == 0 && bi.cluster_size)
        json_object_set_new(o, "cluster-size", json_integer((json_int_t)bi.cluster_size));
    if (bs->encrypted)
        json_object_set_new(o, "encrypted", json_true());
    if (bs->backing_file && bs->backing_file[0]) {
        json_object_set_new(o, "backing-filename", json_string(bs->backing_file));
        if (bs->full_backing_filename)
            json_object_set_new(o, "full-backing-filename", json_string(bs->full_backing_filename));
        if (bs->backing_format && bs->backing_format[0])
            json_object_set_new(o, "backing-filename-format", json_string(bs->backing_format));
    }
    nsn = blk_snapshot_list(bs, &sn, err);
    if (nsn == -ENOTSUP && !err_is_set(err))
        nsn = 0;    /* as qemu: no snapshot list (qcow2 with a data file) */
    if (nsn < 0) {
        json_decref(o);
        return NULL;
    }
    if (nsn > 0) {
        json_t *list = json_array();
        for (int i = 0; i < nsn; i++) {
            json_t *s = json_object();
            json_object_set_new(s, "id", json_string(sn[i].id_str));
            json_object_set_new(s, "name", json_string(sn[i].name));
            json_object_set_new(s, "vm-state-size", json_integer((json_int_t)sn[i].vm_state_size));
            json_object_set_new(s, "date-sec", json_integer(sn[i].date_sec));
            json_object_set_new(s, "date-nsec", json_integer(sn[i].date_nsec));
            json_object_set_new(s, "vm-clock-sec", json_integer((json_int_t)(sn[i].vm_clock_nsec / 1000000000)));
            json_object_set_new(s, "vm-clock-nsec", json_integer((json_int_t)(sn[i].vm_clock_nsec % 1000000000)));
            if (sn[i].icount != UINT64_MAX)
                json_object_set_new(s, "icount", json_integer((json_int_t)sn[i].icount));
            json_array_append_new(list, s);
        }
        json_object_set_new(o, "snapshots", list);
    }
    free(sn);
    json_t *spec = blk_specific_info(bs, err);
    if (err_is_set(err)) {
        json_decref(spec);
        json_decref(o);
        return NULL;
    }
    if (spec) {
        json_t *fs = json_object();
        json_object_set_new(fs, "type", json_string(blk_driver_name(bs->drv)));
        json_object_set_new(fs, "data", spec);
        json_object_set_new(o, "format-specific", fs);
    }
    return o;
}

void snapshot_dump_header(struct strbuf *sb)
{
    strbuf_addf(sb, "%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
}

void snapshot_dump(struct strbuf *sb, const struct blk_snapshot *sn)
{
    char date[64] = "", sizing[64], icount[64] = "", clock[128];
    time_t t = (time_t)sn->date_sec;
    struct tm tm;
    uint64_t secs = sn->vm_clock_nsec / 1000000000;

    if (localtime_r(&t, &tm))
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / 1000000) % 1000));
    size_to_human(sn->vm_state_size, sizing, sizeof(sizing));
    if (sn->icount != UINT64_MAX)
        snprintf(icount, sizeof(icount), "%lld", (long long)sn->icount);
    strbuf_addf(sb, "%-9s %-16s %8s%20s%13s%11s", sn->id_str, sn->name, sizing, date, clock, icount);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

void image_info_human(struct strbuf *sb, const json_t *o)
{
    char vs[64], ds[64];
    const json_t *actual = json_object_get(o, "actual-size");
    const json_t *cs = json_object_get(o, "cluster-size");
    const json_t *dirty = json_object_get(o, "dirty-flag");
    const json_t *sn = json_object_get(o, "snapshots");
    const json_t *fs = json_object_get(o, "format-specific");
    json_int_t vsize = json_integer_value(json_object_get(o, "virtual-size"));

    size_to_human((uint64_t)vsize, vs, sizeof(vs));
    if (actual)
        size_to_human((uint64_t)json_integer_value(actual), ds, sizeof(ds));
    else
        snprintf(ds, sizeof(ds), "unavailable");
    strbuf_addf(sb, "image: %s\nfile format: %s\nvirtual size: %s (%lld bytes)\ndisk size: %s\n",
                jstr(o, "filename"), jstr(o, "format"), vs, (long long)vsize, ds);
    if (json_is_true(json_object_get(o, "encrypted")))
        strbuf_puts(sb, "encrypted: yes\n");
    if (cs)
        strbuf_addf(sb, "cluster_size: %lld\n", (long long)json_integer_value(cs));
    if (json_is_true(dirty))
        strbuf_puts(sb, "cleanly shut down: no\n");
    if (jstr(o, "backing-filename")) {
        const char *b = jstr(o, "backing-filename"), *full = jstr(o, "full-backing-filename");
        strbuf_addf(sb, "backing file: %s", b);
        if (!full)
            strbuf_puts(sb, " (cannot determine actual path)");
        else if (strcmp(b, full))
            strbuf_addf(sb, " (actual path: %s)", full);
        strbuf_puts(sb, "\n");
        if (jstr(o, "backing-filename-format"))
            strbuf_addf(sb, "backing file format: %s\n", jstr(o, "backing-filename-format"));
    }
    if (sn) {
        size_t i;
        json_t *s;
        strbuf_puts(sb, "Snapshot list:\n");
        snapshot_dump_header(sb);
        strbuf_puts(sb, "\n");
        json_array_foreach(sn, i, s) {
            struct blk_snapshot x;
            memset(&x, 0, sizeof(x));
            snprintf(x.id_str, sizeof(x.id_str), "%s", jstr(s, "id"));
            snprintf(x.name, sizeof(x.name), "%s", jstr(s, "name"));
            x.vm_state_size = (uint64_t)json_integer_value(json_object_get(s, "vm-state-size"));
            x.date_sec = (uint32_t)json_integer_value(json_object_get(s, "date-sec"));
            x.date_nsec = (uint32_t)json_integer_value(json_object_get(s, "date-nsec"));
            x.vm_clock_nsec = (uint64_t)json_integer_value(json_object_get(s, "vm-clock-sec")) * 1000000000ULL +
                              (uint64_t)json_integer_value(json_object_get(s, "vm-clock-nsec"));
            x.icount = json_object_get(s, "icount") ?
                       (uint64_t)json_integer_value(json_object_get(s, "icount")) : UINT64_MAX;
            snapshot_dump(sb, &x);
            strbuf_puts(sb, "\n");
        }
    }
    if (fs) {
        strbuf_puts(sb, "Format specific information:\n");
        qjson_human(sb, json_object_get(fs, "data"), 1);
    }
}

int cmd_info(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, 'O' + 256 },
        { "backing-chain", no_argument, NULL, 'b' + 256 },
        { "object", required_argument, NULL, 'o' + 256 },
        { "image-opts", no_argument, NULL, 'i' + 256 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL;
    bool chain = false, image_opts = false, force_share = false;
    enum output_format ofmt;
    int c;

    while ((c = getopt_long(argc, argv, ":f:hU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt = optarg; break;
        case 'U': force_share = true; break;
        case 'O' + 256: output = optarg; break;
        case 'b' + 256: chain = true; break;
        case 'i' + 256: image_opts = true; break;
        case 'o' + 256:
            if (object_add(optarg) < 0)
                return 1;
            break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    if (parse_output_format(output, &ofmt) < 0)
        return 1;

    json_t *list = json_array();
    char **seen = NULL;
    size_t nseen = 0;
    char *filename = xstrdup(argv[optind]);
    char *cur_fmt = fmt ? xstrdup(fmt) : NULL;
    int ret = 0;

    while (filename) {
        for (size_t i = 0; i < nseen; i++) {
            if (!strcmp(seen[i], filename)) {
                error_report("Backing file '%s' creates an infinite loop.", filename);
                ret = 1;
                goto out;
            }
        }
        seen = xrealloc(seen, (nseen + 1) * sizeof(*seen));
        seen[nseen++] = xstrdup(filename);

        struct img_open_args a = {
            .filename = filename, .fmt = cur_fmt, .image_opts = image_opts,
            .flags = BLK_O_NO_BACKING | BLK_O_NO_IO | (force_share ? BLK_O_SHARE : 0),
        };
        struct bds *bs = img_open(&a);
        if (!bs) {
            ret = 1;
            goto out;
        }
        struct err e;
        err_init(&e);
        json_t *info = image_info_json(bs, &e);
        if (!info) {
            error_report("%s", e.msg);
            blk_close(bs);
            ret = 1;
            goto out;
        }
        json_array_append_new(list, info);
        free(filename);
        free(cur_fmt);
        filename = NULL;
        cur_fmt = NULL;
        if (chain && bs->full_backing_filename) {
            /* each link is opened as a top image: safe mode checks it here */
            if (blk_safe_check_ref(bs->filename, bs->full_backing_filename, "backing file", &e) < 0) {
                error_report("%s", e.msg);
                blk_close(bs);
                ret = 1;
                goto out;
            }
            filename = xstrdup(bs->full_backing_filename);
            cur_fmt = bs->backing_format ? xstrdup(bs->backing_format) : NULL;
        }
        image_opts = false;
        blk_close(bs);
    }

    struct strbuf sb = STRBUF_INIT;
    if (ofmt == OFORMAT_JSON) {
        qjson_pretty(&sb, chain ? list : json_array_get(list, 0));
        strbuf_puts(&sb, "\n");
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
            if (i)
                strbuf_puts(&sb, "\n");
            image_info_human(&sb, v);
        }
    }
    fputs(strbuf_str(&sb), stdout);
    strbuf_release(&sb);
out:
    for (size_t i = 0; i < nseen; i++)
        free(seen[i]);
    free(seen);
    free(filename);
    free(cur_fmt);
    json_decref(list);
    return ret;
}

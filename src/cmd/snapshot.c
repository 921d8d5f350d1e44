/* qemu-img snapshot: list, create, apply and delete internal snapshots.
 * Delete looks the snapshot up by name (as qemu-img 7.2 does); apply hands
 * the id-or-name to the driver. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cmd/cmd.h"
#include "cmd/imageinfo.h"
#include "util/strbuf.h"

enum { SNAPSHOT_LIST = 1, SNAPSHOT_CREATE, SNAPSHOT_APPLY, SNAPSHOT_DELETE };

static void dump_snapshots(struct bds *bs)
{
    struct blk_snapshot *sn = NULL;
    struct err e;
    int n;

    err_init(&e);
    n = blk_snapshot_list(bs, &sn, &e);
    if (n <= 0) {
        free(sn);
        return;
    }
    struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, "Snapshot list:\n");
    snapshot_dump_header(&sb);
    strbuf_puts(&sb, "\n");
    for (int i = 0; i < n; i++) {
        snapshot_dump(&sb, &sn[i]);
        strbuf_puts(&sb, "\n");
    }
    fputs(strbuf_str(&sb), stdout);
    strbuf_release(&sb);
    free(sn);
}

/* The first snapshot whose name matches, like bdrv_snapshot_find. */
static int find_by_name(struct bds *bs, const char *name, struct blk_snapshot *out)
{
    struct blk_snapshot *sn = NULL;
    struct err e;
    int n, r = -ENOENT;

    err_init(&e);
    n = blk_snapshot_list(bs, &sn, &e);
    for (int i = 0; i < n; i++) {
        if (!strcmp(sn[i].name, name)) {
            *out = sn[i];
            r = 0;
            break;
        }
    }
    free(sn);
    return r;
}

/* --image-opts "read-only=on": the node opens read-only, which a writing
 * action then refuses (the block layer does not act on the option). */
static bool opts_read_only(bool image_opts, const char *filename)
{
    struct kvopts o;
    struct err e;
    bool ro = false;

    if (!image_opts)
        return false;
    kvopts_init(&o);
    err_init(&e);
    if (kvopts_parse(&o, filename, NULL, &e) == 0 &&
        kvopts_get_bool(&o, "read-only", false, &ro, &e) < 0)
        ro = false;
    kvopts_release(&o);
    return ro;
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 256 },
        { "image-opts", no_argument, NULL, 257 },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *snapshot_name = NULL;
    bool quiet = false, image_opts = false, force_share = false;
    int c, action = 0, flags = BLK_O_RDWR, ret = 0;
    struct err e;

    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action)
                error_exit("Cannot mix '-l', '-a', '-c', '-d'");
            action = c == 'l' ? SNAPSHOT_LIST : c == 'a' ? SNAPSHOT_APPLY :
                     c == 'c' ? SNAPSHOT_CREATE : SNAPSHOT_DELETE;
            if (c == 'l')
                flags &= ~BLK_O_RDWR;
            else
                snapshot_name = optarg;
            break;
        case 'q': quiet = true; break;
        case 'U': force_share = true; break;
        case 256:
            if (object_add(optarg) < 0)
                return 1;
            break;
        case 257: image_opts = true; break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    const char *filename = argv[optind];
    struct img_open_args a = { .filename = filename, .image_opts = image_opts, .quiet = quiet,
                               .flags = flags | (force_share ? BLK_O_SHARE : 0) };
    /* qemu refuses these before and after opening the image. */
    if (force_share && (flags & BLK_O_RDWR)) {
        error_report("Could not open '%s': force-share=on can only be used with read-only images",
                     filename);
        return 1;
    }
    struct bds *bs = img_open(&a);
    if (!bs)
        return 1;
    if ((flags & BLK_O_RDWR) && (bs->read_only || opts_read_only(image_opts, filename))) {
        error_report("Could not open '%s': Block node is read-only", filename);
        blk_close(bs);
        return 1;
    }
    err_init(&e);
    switch (action) {
    case SNAPSHOT_LIST:
        dump_snapshots(bs);
        break;
    case SNAPSHOT_CREATE: {
        struct blk_snapshot sn;
        struct timeval tv;
        memset(&sn, 0, sizeof(sn));
        /* qemu keeps names in a 256-byte buffer: longer ones are cut */
        snprintf(sn.name, sizeof(sn.name), "%.255s", snapshot_name);
        gettimeofday(&tv, NULL);
        sn.date_sec = (uint32_t)tv.tv_sec;
        sn.date_nsec = (uint32_t)tv.tv_usec * 1000;
        ret = blk_snapshot_create(bs, &sn, &e);
        if (ret)
            error_report("Could not create snapshot '%s': %d (%s)", snapshot_name, ret,
                         strerror(-ret));
        break;
    }
    case SNAPSHOT_APPLY:
        ret = blk_snapshot_goto(bs, snapshot_name, &e);
        if (ret) {
            if (!e.set)
                err_set_errno(&e, -ret, "Failed to load snapshot");
            /* Lines before the last one are reports qemu's driver makes on
             * its own (error_report_err) before the command's line. */
            char *last = strrchr(e.msg, '\n');
            if (last) {
                *last++ = '\0';
                for (char *line = e.msg, *nl; line; line = nl) {
                    nl = strchr(line, '\n');
                    if (nl)
                        *nl++ = '\0';
                    error_report("%s", line);
                }
            }
            error_report("Could not apply snapshot '%s': %s", snapshot_name, last ? last : e.msg);
        }
        break;
    case SNAPSHOT_DELETE: {
        struct blk_snapshot sn;
        if (find_by_name(bs, snapshot_name, &sn) < 0) {
            error_report("Could not delete snapshot '%s': snapshot not found", snapshot_name);
            ret = 1;
        } else {
            ret = blk_snapshot_delete(bs, sn.id_str, sn.name, &e);
            if (ret < 0) {
                if (!e.set)
                    err_set_errno(&e, -ret, "Failed to delete snapshot");
                error_report("Could not delete snapshot '%s': %s", snapshot_name, e.msg);
                ret = 1;
            }
        }
        break;
    }
    }
    if (blk_flush(bs) < 0 && !ret) {
        error_report("Failed to flush the image");
        ret = 1;
    }
    blk_close(bs);
    return ret ? 1 : 0;
}

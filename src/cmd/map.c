/* qemu-img map: where the guest-visible data of an image lives, as qemu-img
 * 7.2's img_map prints it. Each step asks one layer of the backing chain
 * after another for the status of the rest of the range (depth = how many
 * backing levels down the answer came from), adjacent entries with equal
 * attributes (and contiguous host offsets) are merged, and the result is
 * printed as the human "Offset Length Mapped to File" table (data only) or
 * as JSON, one entry per line. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "util/ckd.h"

struct map_entry {
    int64_t start, length;
    int64_t offset;
    int64_t depth;
    bool data, zero, present, has_offset;
    const char *filename;       /* owned by the node; NULL: none */
};

/* The status of [off, off+len) as the first layer that answers it says. */
static int map_block_status(struct bds *bs, int64_t off, int64_t len, struct map_entry *e)
{
    uint64_t n = (uint64_t)len, map = 0;
    struct bds *file = NULL;
    int64_t depth = 0;
    int r;

    for (;;) {
        uint64_t pnum = 0;
        r = blk_block_status(bs, (uint64_t)off, n, &pnum, &map, &file);
        if (r < 0)
            return r;
        if (pnum == 0 || pnum > n)
            return -EIO;        /* a layer shorter than the one above it */
        n = pnum;
        if (r & (BLK_STATUS_DATA | BLK_STATUS_ZERO))
            break;
        bs = bs->backing;
        if (!bs) {
            r = 0;
            break;
        }
        depth++;
    }
    memset(e, 0, sizeof(*e));
    e->start = off;
    e->length = (int64_t)n;
    e->data = r & BLK_STATUS_DATA;
    e->zero = r & BLK_STATUS_ZERO;
    e->has_offset = r & BLK_STATUS_OFFSET_VALID;
    e->offset = e->has_offset ? (int64_t)map : 0;
    e->depth = depth;
    e->present = r & BLK_STATUS_ALLOCATED;
    e->filename = file && e->has_offset ? file->filename : NULL;
    return 0;
}

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->length == 0)
        return false;
    if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
        a->present != b->present || !a->filename != !b->filename ||
        a->has_offset != b->has_offset)
        return false;
    if (a->filename && strcmp(a->filename, b->filename))
        return false;
    if (a->has_offset && a->offset + a->length != b->offset)
        return false;
    return true;
}

/* The lines are formatted by hand: a large image has thousands of extents
 * and printf's format parsing was most of the command's user time. */

/* printf's "%#-16llx": 0 is "0", others "0x..."; left-aligned in 16. */
static char *put_hex_col(char *p, uint64_t v)
{
    char tmp[16];
    int n = 0;
    char *start = p;

    if (v == 0) {
        *p++ = '0';
    } else {
        while (v) {
            tmp[n++] = "0123456789abcdef"[v & 15];
            v >>= 4;
        }
        *p++ = '0';
        *p++ = 'x';
        while (n)
            *p++ = tmp[--n];
    }
    while (p - start < 16)
        *p++ = ' ';
    return p;
}

/* printf's "%lld". */
static char *put_dec(char *p, int64_t v)
{
    char tmp[20];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    if (v < 0)
        *p++ = '-';
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static int dump_entry(enum output_format of, const struct map_entry *e, struct map_entry *next)
{
    char line[256], *p = line;

    if (of == OFORMAT_HUMAN) {
        if (e->data && !e->has_offset) {
            error_report("File contains external, encrypted or compressed clusters.");
            return -1;
        }
        if (e->data && !e->zero) {
            p = put_hex_col(p, (uint64_t)e->start);
            p = put_hex_col(p, (uint64_t)e->length);
            p = put_hex_col(p, (uint64_t)(e->has_offset ? e->offset : 0));
            fwrite(line, 1, (size_t)(p - line), stdout);
            if (e->filename)
                fputs(e->filename, stdout);
            putchar('\n');
        }
        /* The table does not tell holes from zeros: let those merge. */
        if (next && (!next->data || next->zero)) {
            next->data = false;
            next->zero = true;
        }
        return 0;
    }
    p = put_str(p, "{ \"start\": ");
    p = put_dec(p, e->start);
    p = put_str(p, ", \"length\": ");
    p = put_dec(p, e->length);
    p = put_str(p, ", \"depth\": ");
    p = put_dec(p, e->depth);
    p = put_str(p, e->present ? ", \"present\": true" : ", \"present\": false");
    p = put_str(p, e->zero ? ", \"zero\": true" : ", \"zero\": false");
    p = put_str(p, e->data ? ", \"data\": true" : ", \"data\": false");
    if (e->has_offset) {
        p = put_str(p, ", \"offset\": ");
        p = put_dec(p, e->offset);
    }
    *p++ = '}';
    if (next) {
        *p++ = ',';
        *p++ = '\n';
    }
    fwrite(line, 1, (size_t)(p - line), stdout);
    return 0;
}

int cmd_map(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, 256 },
        { "object", required_argument, NULL, 257 },
        { "image-opts", no_argument, NULL, 258 },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *output = NULL;
    bool image_opts = false, force_share = false;
    int64_t start_offset = 0, max_length = -1, length;
    enum output_format of = OFORMAT_HUMAN;
    struct map_entry curr, next;
    struct bds *bs;
    int c, ret = 0;

    while ((c = getopt_long(argc, argv, ":f:s:l:hU", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt = optarg; break;
        case 'U': force_share = true; break;
        case 256: output = optarg; break;
        case 's':
            start_offset = cvtnum("start offset", optarg);
            if (start_offset < 0)
                return 1;
            break;
        case 'l':
            max_length = cvtnum("max length", optarg);
            if (max_length < 0)
                return 1;
            break;
        case 257:
            if (object_add(optarg) < 0)
                return 1;
            break;
        case 258: image_opts = true; break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    if (output && parse_output_format(output, &of) < 0)
        return 1;

    struct img_open_args a = {
        .filename = argv[optind], .fmt = fmt, .image_opts = image_opts,
        .flags = force_share ? BLK_O_SHARE : 0,
    };
    bs = img_open(&a);
    if (!bs)
        return 1;
    if (of == OFORMAT_HUMAN)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    else
        putchar('[');

    length = blk_getlength(bs);
    if (length < 0) {
        error_report("Failed to get size for '%s'", argv[optind]);
        blk_close(bs);
        return 1;
    }
    if (max_length != -1) {
        int64_t end;
        /* qemu adds without an overflow check; a wrapped (negative) end
         * means an empty walk, which is what this reproduces. */
        if (ckd_add(&end, start_offset, max_length))
            end = -1;
        if (end < length)
            length = end;
    }

    memset(&curr, 0, sizeof(curr));
    curr.start = start_offset;
    while (curr.start + curr.length < length) {
        int64_t off = curr.start + curr.length;

        ret = map_block_status(bs, off, length - off, &next);
        if (ret < 0) {
            error_report("Could not read file metadata: %s", strerror(-ret));
            goto out;
        }
        if (mergeable(&curr, &next)) {
            curr.length += next.length;
            continue;
        }
        if (curr.length > 0) {
            ret = dump_entry(of, &curr, &next);
            if (ret < 0)
                goto out;
        }
        curr = next;
    }
    ret = dump_entry(of, &curr, NULL);
    if (of == OFORMAT_JSON)
        puts("]");
out:
    blk_close(bs);
    return ret < 0;
}

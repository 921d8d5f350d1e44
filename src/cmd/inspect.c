/* qimg inspect [-f fmt] [--output=ofmt] filename — qimg's own command (not in
 * qemu-img): what an image importer must know before it lets qemu-img near
 * an untrusted upload, the facts OpenStack's format inspector
 * (oslo.utils imageutils.format_inspector) checks; see docs/safety.md.
 *
 * Sources for the layouts: qemu's docs/interop/qcow2.txt (header fields,
 * incompatible feature bits 0..4, the external data file extension
 * 0x44415441), VMware's Virtual Disk Format 1.1 (sparse header, descriptor
 * createType and extent lines), the UEFI spec (protective MBR, GPT header
 * and partition entries) and ECMA-119 (the "CD001" volume descriptor at byte
 * 32769), qemu's docs/interop/qed_spec.txt.
 *
 * Invariants: the file is only read, through its protocol node; nothing it
 * names is opened outside the image's directory (the format open used for the
 * virtual size runs in safe mode without the backing chain); every number
 * read from it is bounds-checked against the file size before use, and every
 * read is capped (INSPECT_MAX_READ). Exit: 0 safe, 2 unsafe findings, 1 error. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/registry.h"
#include "cmd/cmd.h"
#include "util/ckd.h"
#include "util/endian.h"
#include "util/xalloc.h"

#define INSPECT_PROBE_LEN   2048u          /* qemu's BLOCK_PROBE_BUF_SIZE */
#define INSPECT_MAX_READ    (1u << 20)     /* descriptors, partition tables */
#define INSPECT_MAX_PARTS   128u
#define INSPECT_MAX_FORMATS 16u

#define QCOW2_KNOWN_INCOMPAT UINT64_C(0x1f)      /* dirty, corrupt, data file, compression, ext L2 */
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_EXT_DATA_FILE 0x44415441u

struct inspect {
    struct bds *proto;
    int64_t size;
    const char *filename;
    json_t *findings;
    json_t *signatures;
    bool unsafe;
};

static const char *const well_known[] = { "raw", "qcow2", "vmdk", "vpc", "vhdx", "vdi" };

static void finding(struct inspect *in, const char *check, bool unsafe, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finding(struct inspect *in, const char *check, bool unsafe, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    json_t *o = json_object();

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object_set_new(o, "check", json_string(check));
    json_object_set_new(o, "unsafe", json_boolean(unsafe));
    json_object_set_new(o, "message", json_string(msg));
    json_array_append_new(in->findings, o);
    in->unsafe |= unsafe;
}

/* Read up to len bytes at off into buf, zero-filling what lies past the end
 * of the file; returns the bytes that came from the file or -errno. */
static int64_t read_at(struct inspect *in, uint64_t off, size_t len, uint8_t *buf)
{
    uint64_t avail;
    int r;

    memset(buf, 0, len);
    if (off >= (uint64_t)in->size)
        return 0;
    avail = (uint64_t)in->size - off;
    if (avail < len)
        len = (size_t)avail;
    r = blk_pread(in->proto, off, len, buf);
    return r < 0 ? r : (int64_t)len;
}

/* A NUL-terminated copy of a name stored at off (len bytes, capped), for messages. */
static char *read_name(struct inspect *in, uint64_t off, uint64_t len)
{
    uint64_t end;
    char *s;

    if (len == 0 || len > 4096 || ckd_add(&end, off, len) || end > (uint64_t)in->size)
        return xstrdup("?");
    s = xmalloc(len + 1);
    if (read_at(in, off, len, (uint8_t *)s) < 0) {
        free(s);
        return xstrdup("?");
    }
    s[len] = '\0';
    for (uint64_t i = 0; i < len && s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
    return s;
}

static void check_qcow2(struct inspect *in, const uint8_t *h)
{
    uint32_t version = get_be32(h + 4), bfs = get_be32(h + 16), cbits = get_be32(h + 20);
    uint64_t bfo = get_be64(h + 8);

    if (bfo) {
        char *name = read_name(in, bfo, bfs);
        finding(in, "backing-file", true, "the image names a backing file '%s'", name);
        free(name);
    }
    if (version < 3)
        return;
    uint64_t incompat = get_be64(h + 72);
    uint32_t hdr_len = get_be32(h + 100);
    if (incompat & ~QCOW2_KNOWN_INCOMPAT)
        finding(in, "unknown-features", true,
                "unknown incompatible feature bits 0x%" PRIx64 " are set",
                (uint64_t)(incompat & ~QCOW2_KNOWN_INCOMPAT));
    if (!(incompat & QCOW2_INCOMPAT_DATA_FILE))
        return;
    /* The data file's name is in a header extension after the header. */
    char *name = NULL;
    uint64_t off = hdr_len, end = INSPECT_PROBE_LEN;
    if (cbits >= 9 && cbits <= 21)
        end = 1ULL << cbits;
    for (int i = 0; i < 64 && name == NULL && off + 8 <= end; i++) {
        uint8_t e[8];
        uint64_t next;
        if (read_at(in, off, sizeof(e), e) < 8)
            break;
        uint32_t type = get_be32(e), len = get_be32(e + 4);
        if (type == 0)
            break;
        if (type == QCOW2_EXT_DATA_FILE)
            name = read_name(in, off + 8, len);
        if (ckd_add(&next, off, 8 + (((uint64_t)len + 7) & ~7ULL)))
            break;
        off = next;
    }
    finding(in, "data-file", true, "the image keeps its data in an external data file '%s'",
            name ? name : "");
    free(name);
}

/* The value of key="..." (or key=...) in a VMDK descriptor line, or NULL. */
static char *desc_value(const char *line, const char *key)
{
    size_t k = strlen(key);
    const char *v, *e;

    if (strncmp(line, key, k))
        return NULL;
    v = line + k;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v++ != '=')
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '"') {
        v++;
        e = strchr(v, '"');
    } else {
        e = v + strcspn(v, " \t\r");
    }
    if (!e)
        return NULL;
    return xasprintf("%.*s", (int)(e - v), v);
}

static void check_vmdk_desc(struct inspect *in, char *desc, bool embedded)
{
    char *save = NULL, *create_type = NULL;
    unsigned extents = 0;

    for (char *line = strtok_r(desc, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char access[16], type[16], fname[1024];
        long long sectors;
        char *v;

        while (*line == ' ' || *line == '\t')
            line++;
        if ((v = desc_value(line, "createType"))) {
            free(create_type);
            create_type = v;
            continue;
        }
        if ((v = desc_value(line, "parentFileNameHint"))) {
            finding(in, "backing-file", true, "the descriptor names a parent image '%s'", v);
            free(v);
            continue;
        }
        if (sscanf(line, "%15s %lld %15s \"%1023[^\"]\"", access, &sectors, type, fname) != 4 ||
            (strcmp(access, "RW") && strcmp(access, "RDONLY") && strcmp(access, "NOACCESS")))
            continue;
        extents++;
        if (fname[0] == '/' || strstr(fname, ".."))
            finding(in, "vmdk-extent-outside", true,
                    "extent '%s' lies outside the image's directory", fname);
        else if (strchr(fname, '/'))
            finding(in, "vmdk-extent-path", true, "extent '%s' names a path", fname);
        if (embedded && (extents > 1 || strcmp(type, "SPARSE")))
            finding(in, "vmdk-embedded-extents", true,
                    "the embedded descriptor lists extent %u '%s' of type %s", extents, fname,
                    type);
        else if (!embedded)
            finding(in, "vmdk-extent-file", true, "the descriptor names extent file '%s'",
                    fname);
    }
    if (!create_type)
        finding(in, "vmdk-create-type", true, "the descriptor has no createType");
    else if (strcmp(create_type, "monolithicSparse") && strcmp(create_type, "streamOptimized"))
        finding(in, "vmdk-create-type", true,
                "createType '%s' is not monolithicSparse or streamOptimized", create_type);
    free(create_type);
}

static int check_vmdk(struct inspect *in, const uint8_t *h)
{
    uint64_t off = 0, len = (uint64_t)in->size;
    bool embedded = false;
    char *desc;
    int64_t r;

    if (get_le32(h) == 0x564d444bu) {           /* "KDMV": sparse extent */
        uint64_t so = get_le64(h + 28), sl = get_le64(h + 36);
        if (!so || !sl)
            return 0;
        if (ckd_mul(&off, so, 512) || ckd_mul(&len, sl, 512) || len > INSPECT_MAX_READ) {
            finding(in, "vmdk-descriptor", true, "the embedded descriptor is out of range");
            return 0;
        }
        embedded = true;
    } else if (get_le32(h) == 0x44574f43u) {    /* "COWD": no descriptor */
        return 0;
    }
    if (len > INSPECT_MAX_READ) {
        finding(in, "vmdk-descriptor", true, "the descriptor is larger than %u bytes",
                INSPECT_MAX_READ);
        return 0;
    }
    desc = xmalloc(len + 1);
    r = read_at(in, off, len, (uint8_t *)desc);
    if (r < 0) {
        free(desc);
        return (int)r;
    }
    desc[r] = '\0';
    check_vmdk_desc(in, desc, embedded);
    free(desc);
    return 0;
}

/* The formats (other than raw) the 2 KiB at off probe as. */
static size_t probe_at(struct inspect *in, uint64_t off, const char **names)
{
    uint8_t buf[INSPECT_PROBE_LEN];
    int scores[INSPECT_MAX_FORMATS];
    int64_t got = read_at(in, off, sizeof(buf), buf);
    size_t n, k = 0;

    if (got <= 0)
        return 0;
    n = blk_probe_all(buf, (size_t)got, in->filename, names, scores, INSPECT_MAX_FORMATS);
    if (n > INSPECT_MAX_FORMATS)
        n = INSPECT_MAX_FORMATS;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], "raw"))
            names[k++] = names[i];
    return k;
}

static void check_partition(struct inspect *in, uint64_t lba, const char *table)
{
    const char *names[INSPECT_MAX_FORMATS];
    uint64_t off;

    if (!lba || ckd_mul(&off, lba, 512) || off >= (uint64_t)in->size)
        return;
    if (probe_at(in, off, names))
        finding(in, "embedded-image", true,
                "the %s partition at byte %" PRIu64 " holds a %s image header", table, off,
                names[0]);
}

/* Partition tables and ISO 9660: raw disks may carry them, but content that
 * also probes as an image format is the classic confusion attack. */
static int check_signatures(struct inspect *in, const uint8_t *h, const char *fmt)
{
    uint8_t s[512];
    int64_t r;
    bool mbr = h[510] == 0x55 && h[511] == 0xaa, gpt = false, iso = false;

    if (mbr) {
        json_array_append_new(in->signatures, json_string("mbr"));
        for (int i = 0; i < 4; i++)
            check_partition(in, get_le32(h + 446 + 16 * i + 8), "MBR");
    }
    if ((r = read_at(in, 512, sizeof(s), s)) < 0)
        return (int)r;
    if (!memcmp(s, "EFI PART", 8)) {
        uint64_t elba = get_le64(s + 72), eoff, elen;
        uint32_t count = get_le32(s + 80), esize = get_le32(s + 84);
        gpt = true;
        json_array_append_new(in->signatures, json_string("gpt"));
        if (count > INSPECT_MAX_PARTS)
            count = INSPECT_MAX_PARTS;
        if (esize >= 128 && esize <= 4096 && !ckd_mul(&eoff, elba, 512) &&
            !ckd_mul(&elen, (uint64_t)count, esize) && elen <= INSPECT_MAX_READ) {
            uint8_t *t = xmalloc(elen ? elen : 1);
            if ((r = read_at(in, eoff, elen, t)) < 0) {
                free(t);
                return (int)r;
            }
            for (uint32_t i = 0; i < count; i++) {
                static const uint8_t zero[16];
                const uint8_t *e = t + (size_t)i * esize;
                if (memcmp(e, zero, 16))
                    check_partition(in, get_le64(e + 32), "GPT");
            }
            free(t);
        }
    }
    if ((r = read_at(in, 32769, 5, s)) < 0)
        return (int)r;
    if (!memcmp(s, "CD001", 5)) {
        iso = true;
        json_array_append_new(in->signatures, json_string("iso9660"));
    }
    if (strcmp(fmt, "raw") && (mbr || gpt || iso))
        finding(in, "multiple-formats", true, "the %s image also carries %s", fmt,
                iso ? "an ISO 9660 signature at byte 32769" :
                gpt ? "a GPT partition table" : "an MBR boot signature");
    return 0;
}

static const char inspect_help[] =
    "usage: qimg inspect [-f fmt] [--output=ofmt] filename\n"
    "Report what an importer of an untrusted image must know (qimg only):\n"
    "the format as probing detects it, the virtual size, whether the format\n"
    "is a well-known one, and safety findings (backing or data files, unknown\n"
    "qcow2 features, VMDK createType and extents, content that also probes as\n"
    "another format or carries a partition table or ISO 9660 signature).\n"
    "  '-f fmt' the format the image is claimed to be; a mismatch is a finding\n"
    "  '--output' human (default) or json\n"
    "Exit status: 0 safe, 2 unsafe findings, 1 error. See docs/safety.md.\n";

static void print_human(const json_t *o)
{
    const json_t *v;
    size_t i;

    printf("image: %s\n", json_string_value(json_object_get(o, "filename")));
    printf("file format: %s\n", json_string_value(json_object_get(o, "format")));
    if ((v = json_object_get(o, "format-given")))
        printf("format given: %s\n", json_string_value(v));
    printf("well-known format: %s\n",
           json_is_true(json_object_get(o, "well-known")) ? "yes" : "no");
    if ((v = json_object_get(o, "virtual-size")))
        printf("virtual size: %" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
    if ((v = json_object_get(o, "open-error")))
        printf("open error: %s\n", json_string_value(v));
    v = json_object_get(o, "signatures");
    if (json_array_size(v)) {
        printf("signatures:");
        for (i = 0; i < json_array_size(v); i++)
            printf(" %s", json_string_value(json_array_get(v, i)));
        printf("\n");
    }
    printf("safe: %s\n", json_is_true(json_object_get(o, "safe")) ? "yes" : "no");
    v = json_object_get(o, "findings");
    for (i = 0; i < json_array_size(v); i++) {
        const json_t *f = json_array_get(v, i);
        printf("%s: %s: %s\n", json_is_true(json_object_get(f, "unsafe")) ? "unsafe" : "note",
               json_string_value(json_object_get(f, "check")),
               json_string_value(json_object_get(f, "message")));
    }
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, 256 },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt_given = NULL, *output = NULL, *fmt;
    const char *names[INSPECT_MAX_FORMATS];
    enum output_format of = OFORMAT_HUMAN;
    struct inspect in = { 0 };
    uint8_t head[INSPECT_PROBE_LEN];
    struct bds *bs = NULL;
    json_t *o = NULL;
    struct err e;
    size_t n;
    int64_t got;
    int c, ret = 1;

    while ((c = getopt_long(argc, argv, ":f:h", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h':
            fputs(inspect_help, stdout);
            return 0;
        case 'f': fmt_given = optarg; break;
        case 256: output = optarg; break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting one image file name");
    if (output && parse_output_format(output, &of) < 0)
        return 1;
    if (fmt_given && !blk_find_format(fmt_given)) {
        error_report("Unknown file format '%s'", fmt_given);
        return 1;
    }
    in.filename = argv[optind];
    err_init(&e);
    in.proto = blk_open_protocol(in.filename, BLK_O_SHARE, &e);
    if (!in.proto) {
        error_report("%s", e.msg);
        goto out;
    }
    in.size = blk_getlength(in.proto);
    if (in.size < 0) {
        error_report("Could not get the size of '%s': %s", in.filename, strerror((int)-in.size));
        goto out;
    }
    got = read_at(&in, 0, sizeof(head), head);
    if (got < 0) {
        error_report("Could not read '%s': %s", in.filename, strerror((int)-got));
        goto out;
    }
    in.findings = json_array();
    in.signatures = json_array();

    n = probe_at(&in, 0, names);
    fmt = n ? names[0] : "raw";
    for (size_t i = 1; i < n; i++)
        finding(&in, "multiple-formats", true, "the content probes as %s and as %s", fmt,
                names[i]);
    if (fmt_given && strcmp(fmt_given, fmt))
        finding(&in, "format-mismatch", true, "the content probes as %s, not %s", fmt,
                fmt_given);
    if (!strcmp(fmt, "qcow2") || (!strcmp(fmt, "qcow") && get_be64(head + 8)))
        check_qcow2(&in, head);
    else if (!strcmp(fmt, "vmdk") && (ret = check_vmdk(&in, head)) < 0)
        goto read_error;
    else if (!strcmp(fmt, "qed"))
        finding(&in, "qed-format", true, "QED images are not accepted by image importers");
    if ((ret = check_signatures(&in, head, fmt)) < 0)
        goto read_error;

    /* The virtual size from the driver itself, opened as safely as can be:
     * no backing chain, no data I/O, references confined (safe mode). */
    blk_safe_enable();
    err_init(&e);
    bs = blk_open(in.filename, fmt_given ? fmt_given : fmt, NULL,
                  BLK_O_NO_BACKING | BLK_O_NO_IO | BLK_O_SHARE, &e);
    if (bs && bs->backing_file && bs->backing_file[0] && strcmp(fmt, "qcow2") &&
        strcmp(fmt, "qcow") && strcmp(fmt, "vmdk"))
        finding(&in, "backing-file", true, "the image names a backing file '%s'",
                bs->backing_file);

    o = json_object();
    json_object_set_new(o, "filename", json_string(in.filename));
    json_object_set_new(o, "format", json_string(fmt));
    if (fmt_given)
        json_object_set_new(o, "format-given", json_string(fmt_given));
    bool known = false;
    for (size_t i = 0; i < sizeof(well_known) / sizeof(well_known[0]); i++)
        known |= !strcmp(well_known[i], fmt);
    json_object_set_new(o, "well-known", json_boolean(known));
    if (bs)
        json_object_set_new(o, "virtual-size", json_integer((json_int_t)bs->total_size));
    else
        json_object_set_new(o, "open-error", json_string(e.set ? e.msg : "unknown error"));
    json_object_set_new(o, "signatures", json_incref(in.signatures));
    json_object_set_new(o, "safe", json_boolean(!in.unsafe));
    json_object_set_new(o, "findings", json_incref(in.findings));

    if (!bs && !in.unsafe) {
        error_report("Could not open '%s': %s", in.filename, e.set ? e.msg : "unknown error");
        ret = 1;
        goto out;
    }
    if (of == OFORMAT_JSON) {
        char *s = json_dumps(o, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else {
        print_human(o);
    }
    ret = in.unsafe ? 2 : 0;
    goto out;

read_error:
    error_report("Could not read '%s': %s", in.filename, strerror(-ret));
    ret = 1;
out:
    json_decref(o);
    json_decref(in.findings);
    json_decref(in.signatures);
    blk_close(bs);
    blk_close(in.proto);
    return ret;
}

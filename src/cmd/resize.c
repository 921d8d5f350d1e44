/* qemu-img resize: grow, or shrink with --shrink, optionally preallocating
 * the new tail. The size operand is taken off argv before option parsing so
 * that "-1G" is not read as an option, as qemu-img does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

int cmd_resize(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "help", no_argument, NULL, 'h' },
        { "object", required_argument, NULL, 'o' + 256 },
        { "image-opts", no_argument, NULL, 'i' + 256 },
        { "preallocation", required_argument, NULL, 'p' + 256 },
        { "shrink", no_argument, NULL, 's' + 256 },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL, *size;
    bool quiet = false, image_opts = false, shrink = false;
    enum blk_prealloc prealloc = BLK_PREALLOC_OFF;
    int c, relative = 0, ret = 1;
    struct err e;

    if (argc < 3)
        error_exit("Not enough arguments");
    size = argv[--argc];
    err_init(&e);
    while ((c = getopt_long(argc, argv, ":f:hq", long_options, NULL)) != -1) {
        switch (c) {
        case ':': missing_argument(argv[optind - 1]);
        case '?': unrecognized_option(argv[optind - 1]);
        case 'h': help();
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'i' + 256: image_opts = true; break;
        case 's' + 256: shrink = true; break;
        case 'p' + 256:
            if (blk_parse_prealloc(optarg, 0xf, &prealloc, NULL) < 0) {
                error_report("Invalid preallocation mode '%s'", optarg);
                return 1;
            }
            break;
        case 'o' + 256:
            if (object_add(optarg) < 0)
                return 1;
            break;
        }
    }
    if (optind != argc - 1)
        error_exit("Expecting image file name and size");
    const char *filename = argv[optind++];

    if (size[0] == '+') {
        relative = 1;
        size++;
    } else if (size[0] == '-') {
        relative = -1;
        size++;
    }
    struct kvopts p;
    uint64_t n;
    kvopts_init(&p);
    kvopts_set(&p, "size", size);
    int r = kvopts_get_size(&p, "size", 0, &n, &e);
    kvopts_release(&p);
    if (r < 0) {
        error_report("%s", e.msg);
        return 1;
    }

    struct img_open_args a = { .filename = filename, .fmt = fmt, .image_opts = image_opts,
                               .flags = BLK_O_RDWR, .quiet = quiet };
    struct bds *bs = img_open(&a);
    if (!bs)
        return 1;
    int64_t cur = blk_getlength(bs);
    int64_t total;
    if (cur < 0) {
        error_report("Failed to inquire current image length: %s", strerror((int)-cur));
        goto out;
    }
    if (n > INT64_MAX) {
        error_report("New image size must be positive");
        goto out;
    }
    if (relative)
        total = cur + (int64_t)n * relative;
    else
        total = (int64_t)n;
    if (total <= 0) {
        error_report("New image size must be positive");
        goto out;
    }
    if (total <= cur && prealloc != BLK_PREALLOC_OFF) {
        error_report("Preallocation can only be used for growing images");
        goto out;
    }
    if (total < cur && !shrink) {
        error_report("Use the --shrink option to perform a shrink operation.");
        warn_report("Shrinking an image will delete all data beyond the shrunken image's end. "
                    "Before performing such an operation, make sure there is no important data there.");
        goto out;
    }
    if (blk_truncate(bs, (uint64_t)total, true, prealloc, &e) < 0) {
        error_report("%s", e.msg);
        goto out;
    }
    if (blk_flush(bs) < 0) {
        error_report("Failed to flush the image");
        goto out;
    }
    if (!quiet)
        printf("Image resized.\n");
    ret = 0;
out:
    blk_close(bs);
    return ret;
}

/* Safe mode (qimg's own, opt-in: `qimg --safe CMD` or QIMG_SAFE=1); see
 * docs/safety.md. No QEMU specification: this is the policy OpenStack and
 * other image importers apply to untrusted uploads, enforced where an image
 * names another file.
 *
 * An image may name other files: a backing file (every format with
 * backing), an external data file (qcow2 data_file), extents (VMDK
 * descriptors). In safe mode each such reference must, after resolution
 * relative to the image and realpath() (symlinks followed), name a regular
 * file inside the directory of the image that names it; json: and protocol
 * (nbd:, http:, ...) references are refused outright, as are device, FIFO
 * and socket files. The check runs before the reference is opened, so a
 * refused reference is never touched (no open of a FIFO that would block,
 * no connection to a network server).
 *
 * A reference that does not exist is let through: opening it fails with the
 * usual qemu message. The window between this check and the open (a symlink
 * swapped in between) is not closed here; safe mode guards against hostile
 * images, not against a hostile local user racing qimg. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/driver.h"
#include "block/registry.h"
#include "util/err.h"
#include "util/xalloc.h"

static bool safe_forced;

void blk_safe_enable(void)
{
    safe_forced = true;
}

bool blk_safe_enabled(void)
{
    const char *v;

    if (safe_forced)
        return true;
    v = getenv("QIMG_SAFE");
    return v && v[0] && strcmp(v, "0") != 0;
}

/* qemu's path_has_protocol: a ':' before the first '/'. */
static bool has_protocol_prefix(const char *path)
{
    size_t n = strcspn(path, ":/");
    return path[n] == ':';
}

/* Is path something other than a plain local file name? */
static bool is_remote_or_json(const char *path)
{
    const struct blk_driver *drv;

    if (!strncmp(path, "json:", 5) || has_protocol_prefix(path) || strstr(path, "://"))
        return true;
    drv = blk_find_protocol_for(path);
    return drv && strcmp(blk_driver_name(drv), "file") != 0;
}

/* The real directory of the image's name (not of its symlink target:
 * relative references resolve against the name, as qemu resolves them). */
static char *image_real_dir(const char *image)
{
    const char *slash = strrchr(image, '/');
    char *dir, *real;

    if (!slash)
        dir = xstrdup(".");
    else if (slash == image)
        dir = xstrdup("/");
    else
        dir = xasprintf("%.*s", (int)(slash - image), image);
    real = realpath(dir, NULL);
    free(dir);
    return real;
}

static bool path_inside(const char *dir, const char *path)
{
    size_t n = strlen(dir);

    if (n == 1 && dir[0] == '/')
        return path[0] == '/';
    return !strncmp(path, dir, n) && path[n] == '/';
}

int blk_safe_check_ref(const char *image, const char *path, const char *what,
                       struct err *err)
{
    char *dir = NULL, *real = NULL;
    struct stat st;
    int r = 0;

    if (!blk_safe_enabled())
        return 0;
    if (is_remote_or_json(path))
        return err_set(err, EPERM, "Safe mode: refusing %s '%s': not a local file", what,
                       path);
    /* The name as the image wrote it, when it was joined to the image's
     * directory (block/open.c, vmdk): "nbd:host:port" is still a protocol
     * reference even if qimg would have opened it as a file. */
    const char *slash = strrchr(image, '/');
    size_t dlen = slash ? (size_t)(slash - image) + 1 : 0;
    if (dlen && !strncmp(path, image, dlen) && is_remote_or_json(path + dlen))
        return err_set(err, EPERM, "Safe mode: refusing %s '%s': not a local file", what,
                       path + dlen);
    if (is_remote_or_json(image))
        return err_set(err, EPERM,
                       "Safe mode: refusing %s '%s' named by '%s', which is not a local file",
                       what, path, image);
    dir = image_real_dir(image);
    if (!dir) {
        r = err_set_errno(err, errno, "Safe mode: cannot resolve the directory of '%s'",
                          image);
        goto out;
    }
    real = realpath(path, NULL);
    if (!real) {
        if (errno == ENOENT || errno == ENOTDIR)
            goto out;   /* the open reports it as qemu does */
        r = err_set_errno(err, errno, "Safe mode: cannot resolve %s '%s'", what, path);
        goto out;
    }
    if (!path_inside(dir, real)) {
        r = err_set(err, EPERM,
                    "Safe mode: refusing %s '%s': it resolves to '%s', outside '%s'",
                    what, path, real, dir);
        goto out;
    }
    if (stat(real, &st) < 0) {
        r = err_set_errno(err, errno, "Safe mode: cannot stat %s '%s'", what, path);
        goto out;
    }
    if (!S_ISREG(st.st_mode))
        r = err_set(err, EPERM, "Safe mode: refusing %s '%s': not a regular file", what,
                    path);
out:
    free(real);
    free(dir);
    return r;
}

struct bds *blk_open_ref(const char *image, const char *path, const char *what, int flags,
                         struct err *err)
{
    if (blk_safe_check_ref(image, path, what, err) < 0)
        return NULL;
    return blk_open_protocol(path, flags, err);
}

/* Every format driver's probe score for head (qimg inspect: content that
 * probes as more than one format). Returns how many drivers scored > 0;
 * names[] and scores[] receive at most max of them, best first. */
size_t blk_probe_all(const uint8_t *head, size_t len, const char *filename,
                     const char **names, int *scores, size_t max)
{
    size_t n, k = 0;
    const struct blk_driver *const *d = blk_drivers(&n);

    for (size_t i = 0; i < n; i++) {
        if (d[i]->kind != BLK_KIND_FORMAT || !d[i]->probe)
            continue;
        int score = d[i]->probe(head, len, filename);
        if (score <= 0)
            continue;
        if (k < max) {
            size_t j = k;
            while (j > 0 && scores[j - 1] < score) {
                names[j] = names[j - 1];
                scores[j] = scores[j - 1];
                j--;
            }
            names[j] = d[i]->name;
            scores[j] = score;
        }
        k++;
    }
    return k;
}

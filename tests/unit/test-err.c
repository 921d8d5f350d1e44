/* The error carrier: return values, messages, prefixes, propagation, and
 * that a NULL err is accepted everywhere. */
#include <errno.h>
#include <string.h>

#include "tap.h"
#include "util/err.h"

static int fails_with_enospc(struct err *err)
{
    return err_set(err, ENOSPC, "Could not write %s", "x.qcow2");
}

int main(void)
{
    struct err e;

    err_init(&e);
    ok(!err_is_set(&e), "fresh err is not set");
    ok(!err_is_set(NULL), "NULL err is not set");
    is_str(e.msg, "", "fresh message is empty");

    is_int(fails_with_enospc(&e), -ENOSPC, "err_set returns -code");
    ok(err_is_set(&e), "err is set");
    is_int(e.code, ENOSPC, "code stored positive");
    is_str(e.msg, "Could not write x.qcow2", "formatted message");

    err_init(&e);
    is_int(err_set(&e, -EINVAL, "neg"), -EINVAL, "negative code is normalised");
    is_int(e.code, EINVAL, "stored positive");

    is_int(fails_with_enospc(NULL), -ENOSPC, "NULL err still returns -code");

    err_init(&e);
    is_int(err_set_errno(&e, ENOENT, "Could not open '%s'", "a"), -ENOENT, "err_set_errno returns -code");
    {
        char want[256];
        snprintf(want, sizeof(want), "Could not open 'a': %s", strerror(ENOENT));
        is_str(e.msg, want, "err_set_errno appends strerror");
    }
    is_str(e.msg, "Could not open 'a': No such file or directory", "glibc wording, as qemu-img prints");

    err_prefix(&e, "%s: ", "img.qcow2");
    is_str(e.msg, "img.qcow2: Could not open 'a': No such file or directory", "err_prefix prepends");
    err_prefix(NULL, "x");
    {
        struct err clean;
        err_init(&clean);
        err_prefix(&clean, "ctx: ");
        ok(!err_is_set(&clean), "prefix on an unset err does nothing");
        is_str(clean.msg, "", "and leaves the message empty");
    }

    {
        struct err dst, src;
        err_init(&dst);
        err_init(&src);
        err_set(&src, EIO, "first");
        err_propagate(&dst, &src);
        ok(err_is_set(&dst), "propagate moves the error");
        is_str(dst.msg, "first", "message moved");
        ok(!err_is_set(&src), "source cleared");
        err_set(&src, EPERM, "second");
        err_propagate(&dst, &src);
        is_str(dst.msg, "first", "propagate keeps the first error");
        ok(!err_is_set(&src), "source cleared again");
        err_set(&src, EPERM, "third");
        err_propagate(NULL, &src);
        ok(!err_is_set(&src), "propagate to NULL clears the source");
    }

    {
        /* long messages are truncated, never overflowed */
        char big[3000];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        err_init(&e);
        err_set(&e, EINVAL, "%s", big);
        is_uint(strlen(e.msg), ERR_MSG_MAX - 1, "long message truncated to the buffer");
        err_prefix(&e, "prefix: ");
        is_uint(strlen(e.msg), ERR_MSG_MAX - 1, "prefixed long message still bounded");
        ok(strncmp(e.msg, "prefix: aaa", 11) == 0, "prefix kept at the front");
    }

    return done_testing();
}

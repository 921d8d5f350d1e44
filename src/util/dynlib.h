/* Optional libraries loaded on first use (dlopen), so that runs which do
 * not need them start without them: libcurl and libnbd bring dozens of
 * libraries whose loading costs more than a whole `qimg info`.
 *
 * A user lists the functions once, X-macro style, and gets a table of
 * typed pointers:
 *
 *   #define FOO_FUNCS(X) X(foo_open) X(foo_read)
 *   static struct { FOO_FUNCS(DYNLIB_FIELD) } foo;
 *   static int foo_resolve(void *h, struct err *err)
 *   {
 *       void *sym;
 *       FOO_FUNCS(DYNLIB_RESOLVE)
 *       return 0;
 *   }
 *   ... dynlib_load("libfoo.so.1", foo_resolve, &state, err) ...
 *   foo.foo_read(...);
 */
#ifndef QIMG_UTIL_DYNLIB_H
#define QIMG_UTIL_DYNLIB_H

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "util/err.h"

#define DYNLIB_FIELD(f) __typeof__(&f) f;
/* Inside a resolve function with `void *h`, `void *sym` and `struct err *err`
 * (the library's handle): fills one field or fails. */
#define DYNLIB_RESOLVE_INTO(tab, f)                                                 \
    if (!(sym = dlsym(h, #f)))                                                      \
        return err_set(err, ENOSYS, "%s not found", #f);                            \
    memcpy(&(tab).f, &sym, sizeof(sym));

struct dynlib {
    pthread_once_t once;
    const char *soname;
    int (*resolve)(void *handle, struct err *err);
    int rc;                 /* 0 or -errno once loaded */
    struct err err;         /* why it failed */
};

#define DYNLIB_INIT(so, fn) { PTHREAD_ONCE_INIT, (so), (fn), 0, { false, 0, false, "" } }

/* Load the library once per process (thread-safe); later calls return the
 * first outcome. The handle stays open for the life of the process. */
int dynlib_load(struct dynlib *lib, struct err *err);

#endif

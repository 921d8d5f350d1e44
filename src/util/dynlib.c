/* See dynlib.h. */
#include "util/dynlib.h"

#include <errno.h>

/* pthread_once takes no argument: the library being loaded is handed over
 * under this lock. */
static pthread_mutex_t loading_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dynlib *loading;

static void load_once(void)
{
    struct dynlib *lib = loading;
    void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);

    err_init(&lib->err);
    if (!h) {
        const char *why = dlerror();
        lib->rc = err_set(&lib->err, ENOTSUP, "Could not load %s: %s", lib->soname,
                          why ? why : "unknown error");
        return;
    }
    lib->rc = lib->resolve(h, &lib->err);
    if (lib->rc < 0) {
        err_prefix(&lib->err, "Could not load %s: ", lib->soname);
        dlclose(h);
    }
}

int dynlib_load(struct dynlib *lib, struct err *err)
{
    pthread_mutex_lock(&loading_lock);
    loading = lib;
    pthread_once(&lib->once, load_once);
    loading = NULL;
    pthread_mutex_unlock(&loading_lock);
    if (lib->rc < 0 && err) {
        *err = lib->err;
        return lib->rc;
    }
    return lib->rc;
}

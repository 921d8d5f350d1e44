/* See secret.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/secret.h"
#include "util/xalloc.h"

struct secret {
    char *id;
    char *data;
    size_t len;
};

static struct secret *secrets;
static size_t n_secrets;

void secret_add(const char *id, char *data, size_t len)
{
    secrets = xrealloc(secrets, (n_secrets + 1) * sizeof(*secrets));
    secrets[n_secrets].id = xstrdup(id);
    secrets[n_secrets].data = data;
    secrets[n_secrets].len = len;
    n_secrets++;
}

const char *secret_get(const char *id, size_t *len, struct err *err)
{
    for (size_t i = n_secrets; i-- > 0;) {
        if (!strcmp(secrets[i].id, id)) {
            if (len)
                *len = secrets[i].len;
            return secrets[i].data;
        }
    }
    err_set(err, ENOENT, "No secret with id '%s'", id);
    return NULL;
}

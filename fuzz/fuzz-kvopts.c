/* Fuzz target for -o option lists (util/kvopts.c) as create, convert and
 * amend use them: the list check, the parser with and without an implied
 * key, validation against real drivers' option tables (typed values), the
 * typed getters and the "Formatting ..." printer. The input is one string. */
#include <stdlib.h>
#include <string.h>

#include "block/blk.h"
#include "fuzz/fuzz.h"
#include "util/kvopts.h"
#include "util/strbuf.h"

static const char *const formats[] = { "qcow2", "vmdk", "luks", "vhdx", "raw" };

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    struct kvopts o;
    struct err e;
    struct strbuf sb;
    char *s, esc[256];
    uint64_t v;
    bool b;

    if (size > 8192)
        return 0;
    s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    kvopts_list_valid(s);
    esc[0] = '\0';
    kvopts_escape_append(esc, sizeof(esc), s);

    for (int implied = 0; implied < 2; implied++) {
        kvopts_init(&o);
        err_init(&e);
        if (kvopts_parse(&o, s, implied ? "file.filename" : NULL, &e) == 0) {
            const struct blk_driver *d = blk_find_format(formats[size % 5]);
            const struct opt_desc *tables[2] = { d ? blk_driver_create_opts(d) : NULL, NULL };
            err_init(&e);
            kvopts_validate(&o, tables, &e);
            kvopts_find_unknown(&o, tables);
            err_init(&e);
            kvopts_get_size(&o, "size", 0, &v, &e);
            err_init(&e);
            kvopts_get_number(&o, "cluster_size", 0, &v, &e);
            err_init(&e);
            kvopts_get_bool(&o, "lazy_refcounts", false, &b, &e);
            strbuf_init(&sb);
            kvopts_print(&sb, &o, tables, " ");
            strbuf_release(&sb);
            struct kvopts copy;
            kvopts_init(&copy);
            kvopts_copy(&copy, &o);
            free(kvopts_take(&copy, "size"));
            if (o.n)
                kvopts_del(&copy, o.v[0].key);
            kvopts_release(&copy);
        }
        kvopts_release(&o);
    }
    free(s);
    return 0;
}

/* See createopts.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/createopts.h"

static void add_table(struct create_opts *co, const struct opt_desc *t)
{
    for (; t && t->name; t++) {
        bool dup = false;
        for (size_t i = 0; i < co->n; i++)
            if (!strcmp(co->desc[i]->name, t->name))
                dup = true;
        if (!dup && co->n < CREATE_OPTS_MAX)
            co->desc[co->n++] = t;
    }
}

/* bdrv_find_protocol(filename, true): the block layer knows qemu's
 * protocol names and says "Unknown protocol 'foo'" for others. */
const struct blk_driver *create_find_protocol(const char *filename, struct err *err)
{
    return blk_find_protocol(filename, err);
}

void create_opts_merge(struct create_opts *co, const struct blk_driver *fmt, const char *filename)
{
    co->n = 0;
    add_table(co, blk_driver_create_opts(fmt));
    if (filename)
        add_table(co, blk_driver_create_opts(blk_find_protocol_for(filename)));
}

static const char *type_name(enum opt_type t)
{
    switch (t) {
    case OPT_BOOL: return "bool (on/off)";
    case OPT_NUMBER: return "num";
    case OPT_SIZE: return "size";
    default: return "str";
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void opts_print_sorted(const struct opt_desc *const *desc, size_t n)
{
    char *lines[CREATE_OPTS_MAX];

    if (n > CREATE_OPTS_MAX)
        n = CREATE_OPTS_MAX;
    for (size_t i = 0; i < n; i++) {
        char buf[512];
        int len = snprintf(buf, sizeof(buf), "  %s=<%s>", desc[i]->name, type_name(desc[i]->type));
        if (desc[i]->help) {
            if (len < 24)
                len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%*s", 24 - len, "");
            snprintf(buf + len, sizeof(buf) - (size_t)len, " - %s", desc[i]->help);
        }
        lines[i] = strdup(buf);
    }
    qsort(lines, n, sizeof(lines[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        printf("%s\n", lines[i] ? lines[i] : "");
        free(lines[i]);
    }
}

int create_opts_print_help(const char *fmt, const char *filename)
{
    const struct blk_driver *drv = blk_find_format(fmt);
    struct create_opts co;

    if (!drv) {
        error_report("Unknown file format '%s'", fmt);
        return 1;
    }
    if (!blk_driver_can_create(drv)) {
        error_report("Format driver '%s' does not support image creation", fmt);
        return 1;
    }
    if (filename) {
        struct err e;
        err_init(&e);
        const struct blk_driver *proto = create_find_protocol(filename, &e);
        if (!proto) {
            error_report("%s", e.msg);
            return 1;
        }
        if (!blk_driver_can_create(proto)) {
            error_report("Protocol driver '%s' does not support image creation",
                         blk_driver_name(proto));
            return 1;
        }
    }
    create_opts_merge(&co, drv, filename);
    if (filename)
        printf("Supported options:\n");
    else
        printf("Supported %s options:\n", fmt);
    opts_print_sorted(co.desc, co.n);
    if (!filename)
        printf("\nThe protocol level may support further options.\n"
               "Specify the target filename to include those options.\n");
    return 0;
}

static const struct opt_desc *find(const struct create_opts *co, const char *name)
{
    for (size_t i = 0; i < co->n; i++)
        if (!strcmp(co->desc[i]->name, name))
            return co->desc[i];
    return NULL;
}

int create_opts_validate(const struct create_opts *co, const struct kvopts *o, struct err *err)
{
    for (size_t i = 0; i < o->n; i++) {
        const struct opt_desc *d = find(co, o->v[i].key);
        uint64_t u;
        bool b;
        if (!d)
            return err_set(err, EINVAL, "Invalid parameter '%s'", o->v[i].key);
        switch (d->type) {
        case OPT_BOOL:
            if (kvopts_get_bool(o, d->name, false, &b, err) < 0)
                return -EINVAL;
            break;
        case OPT_SIZE:
            if (kvopts_get_size(o, d->name, 0, &u, err) < 0)
                return -EINVAL;
            break;
        case OPT_NUMBER:
            if (kvopts_get_number(o, d->name, 0, &u, err) < 0)
                return -EINVAL;
            break;
        default:
            break;
        }
    }
    return 0;
}

void create_opts_format_line(const struct create_opts *co, const struct kvopts *o,
                             char *buf, size_t size)
{
    size_t len = strlen(buf);
    for (size_t i = 0; i < co->n; i++) {
        const struct opt_desc *d = co->desc[i];
        const char *v = kvopts_get(o, d->name);
        const char *val = v ? v : d->def;
        if (!val)
            continue;
        len = strlen(buf);
        if (len + 2 >= size)
            return;
        snprintf(buf + len, size - len, " %s=", d->name);
        len = strlen(buf);
        if (d->type == OPT_STRING) {
            kvopts_escape_append(buf, size, val);
        } else if ((d->type == OPT_SIZE || d->type == OPT_NUMBER) && v) {
            uint64_t u = 0;
            if (d->type == OPT_SIZE)
                kvopts_get_size(o, d->name, 0, &u, NULL);
            else
                kvopts_get_number(o, d->name, 0, &u, NULL);
            snprintf(buf + len, size - len, "%lld", (long long)u);
        } else {
            snprintf(buf + len, size - len, "%s", val);
        }
    }
}

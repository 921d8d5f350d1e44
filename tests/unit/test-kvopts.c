/* -o option lists as qemu 7.2's QemuOpts parses them. The messages and the
 * "Formatting" tail were checked against the real qemu-img 7.2.22, e.g.
 *   qemu-img create -f qcow2 -o cluster_size=abc x.qcow2 1M
 *   qemu-img create -f qcow2 -o no x.qcow2 1M      -> Invalid parameter ''
 *   qemu-img create -f qcow2 -o compat=v3,,x ...   -> value 'v3,x'        */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util/kvopts.h"

/* A subset of qcow2's create options, in qemu's table order. */
static const struct opt_desc qcow2_opts[] = {
    { "encryption", OPT_BOOL, "Encrypt the image", NULL },
    { "cluster_size", OPT_SIZE, "qcow2 cluster size", "65536" },
    { "extended_l2", OPT_BOOL, "Extended L2 tables", "off" },
    { "preallocation", OPT_STRING, "Preallocation mode", NULL },
    { "compression_type", OPT_STRING, "Compression method", "zlib" },
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "compat", OPT_STRING, "Compatibility level", NULL },
    { "backing_file", OPT_STRING, "File name of a base image", NULL },
    { "lazy_refcounts", OPT_BOOL, "Postpone refcount updates", "off" },
    { "refcount_bits", OPT_NUMBER, "Width of a reference count entry in bits", "16" },
    { NULL, OPT_STRING, NULL, NULL },
};
static const struct opt_desc file_opts[] = {
    { "size", OPT_SIZE, "Virtual disk size", NULL },
    { "preallocation", OPT_STRING, "Preallocation mode", NULL },
    { "nocow", OPT_BOOL, "Turn off copy-on-write", NULL },
    { NULL, OPT_STRING, NULL, NULL },
};
static const struct opt_desc *const tables[] = { qcow2_opts, file_opts, NULL };

static void parse(struct kvopts *o, const char *s, const char *implied)
{
    struct err e;
    err_init(&e);
    kvopts_init(o);
    is_int(kvopts_parse(o, s, implied, &e), 0, "parse \"%s\"", s);
}

static void validate_msg(const char *s, const char *want)
{
    struct kvopts o;
    struct err e;

    parse(&o, s, NULL);
    err_init(&e);
    int r = kvopts_validate(&o, tables, &e);
    if (want) {
        is_int(r, -EINVAL, "validate \"%s\" fails", s);
        is_str(e.msg, want, "validate \"%s\" message", s);
    } else {
        is_int(r, 0, "validate \"%s\" passes", s);
        ok(!e.set, "no error set for \"%s\"", s);
    }
    kvopts_release(&o);
}

static void formatting(const char *s, const char *want)
{
    struct kvopts o;
    struct strbuf sb = STRBUF_INIT;

    parse(&o, s, NULL);
    kvopts_set(&o, "size", "1048576");  /* as qemu-img create does after parsing */
    kvopts_print(&sb, &o, tables, " ");
    is_str(strbuf_str(&sb), want, "Formatting tail for \"%s\"", s);
    strbuf_release(&sb);
    kvopts_release(&o);
}

int main(void)
{
    struct kvopts o;
    struct err e;

    /* basic splitting and comma escapes */
    parse(&o, "a=1,b=x,,y", NULL);
    is_uint(o.n, 2, "two options");
    is_str(kvopts_get(&o, "a"), "1", "a=1");
    is_str(kvopts_get(&o, "b"), "x,y", "\",,\" is a literal comma");
    ok(!o.help, "no help");
    ok(!kvopts_has(&o, "c"), "c absent");
    is_str(kvopts_get(&o, "c"), NULL, "absent key gives NULL");
    kvopts_release(&o);

    parse(&o, "compat=0.10,,", NULL);
    is_str(kvopts_get(&o, "compat"), "0.10,", "trailing \",,\" is a comma in the value");
    kvopts_release(&o);

    parse(&o, "a=,b==c,d=x,,,,y,e", NULL);
    is_str(kvopts_get(&o, "a"), "", "empty value");
    is_str(kvopts_get(&o, "b"), "=c", "value may contain '='");
    is_str(kvopts_get(&o, "d"), "x,,y", "\",,,,\" is two commas");
    is_str(kvopts_get(&o, "e"), "on", "bare key is a flag set to on");
    kvopts_release(&o);

    /* flags */
    parse(&o, "lazy_refcounts,nocow,no", NULL);
    is_str(kvopts_get(&o, "lazy_refcounts"), "on", "\"foo\" means foo=on");
    is_str(kvopts_get(&o, "cow"), "off", "\"nofoo\" means foo=off");
    ok(!kvopts_has(&o, "nocow"), "the no prefix is stripped");
    is_str(kvopts_get(&o, ""), "off", "\"no\" alone is the empty key, off");
    kvopts_release(&o);

    /* help */
    parse(&o, "size=1M,help", NULL);
    ok(o.help, "bare help sets help");
    is_str(kvopts_get(&o, "help"), "on", "help is stored as help=on like qemu");
    kvopts_release(&o);
    parse(&o, "?", NULL);
    ok(o.help, "bare ? sets help");
    kvopts_release(&o);
    parse(&o, "help=on", NULL);
    ok(!o.help, "help=on is not a help request");
    kvopts_release(&o);
    parse(&o, "nohelp", NULL);
    ok(!o.help, "nohelp is not a help request");
    kvopts_release(&o);

    /* empty string */
    parse(&o, "", NULL);
    is_uint(o.n, 0, "empty string gives no options");
    kvopts_release(&o);

    /* later settings win */
    parse(&o, "lazy_refcounts=on,lazy_refcounts=off", NULL);
    is_str(kvopts_get(&o, "lazy_refcounts"), "off", "last value wins");
    {
        bool b = true;
        err_init(&e);
        is_int(kvopts_get_bool(&o, "lazy_refcounts", true, &b, &e), 0, "get_bool ok");
        ok(!b, "lazy_refcounts is off");
    }
    {
        char *v = kvopts_take(&o, "lazy_refcounts");
        is_str(v, "off", "take returns the last value");
        free(v);
        ok(!kvopts_has(&o, "lazy_refcounts"), "take removes every setting");
        is_str(kvopts_take(&o, "lazy_refcounts"), NULL, "take of absent key is NULL");
    }
    kvopts_release(&o);

    /* implied key */
    parse(&o, "secret,id=sec0,data=abc", "qom-type");
    is_str(kvopts_get(&o, "qom-type"), "secret", "implied key takes the first bare element");
    is_str(kvopts_get(&o, "id"), "sec0", "id stays readable");
    is_str(kvopts_get(&o, "data"), "abc", "data");
    kvopts_release(&o);
    parse(&o, "a,,b=c,d", "file.filename");
    is_str(kvopts_get(&o, "file.filename"), "a,b=c", "implied value honours \",,\" and keeps '='");
    is_str(kvopts_get(&o, "d"), "on", "later bare element is a flag");
    kvopts_release(&o);
    parse(&o, "driver=qcow2,x", "file.filename");
    ok(!kvopts_has(&o, "file.filename"), "implied key applies only to the first element");
    is_str(kvopts_get(&o, "x"), "on", "so x is a flag");
    kvopts_release(&o);

    /* set / del / copy */
    kvopts_init(&o);
    kvopts_set(&o, "k", "1");
    kvopts_set(&o, "j", "2");
    kvopts_set(&o, "k", "3");
    is_str(kvopts_get(&o, "k"), "3", "set appends, get returns last");
    {
        struct kvopts c;
        kvopts_init(&c);
        o.help = true;
        is_int(kvopts_copy(&c, &o), 0, "copy");
        is_uint(c.n, 3, "copy keeps every entry");
        is_str(kvopts_get(&c, "k"), "3", "copy keeps order");
        ok(c.help, "copy carries help");
        kvopts_release(&c);
    }
    kvopts_del(&o, "k");
    is_uint(o.n, 1, "del removes all settings of a key");
    is_str(kvopts_get(&o, "j"), "2", "other keys stay");
    kvopts_release(&o);

    /* typed getters and their messages (real qemu-img wording) */
    parse(&o, "lazy_refcounts=maybe,cluster_size=abc,refcount_bits=abc,big=99999999999999999999999,"
              "cs=99999999999999999999999,neg=-1,hex=0x10,y=y,n=n,t=true,f=false,yes=yes,no=no", NULL);
    {
        bool b = false;
        uint64_t u = 0;

        err_init(&e);
        is_int(kvopts_get_bool(&o, "lazy_refcounts", false, &b, &e), -EINVAL, "bad bool");
        is_str(e.msg, "Parameter 'lazy_refcounts' expects 'on' or 'off'", "bool message");
        err_init(&e);
        is_int(kvopts_get_size(&o, "cluster_size", 0, &u, &e), -EINVAL, "bad size");
        is_str(e.msg, "Parameter 'cluster_size' expects a non-negative number below 2^64\n"
                      "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                      "and exabytes, respectively.", "size message with qemu's hint");
        err_init(&e);
        is_int(kvopts_get_number(&o, "refcount_bits", 0, &u, &e), -EINVAL, "bad number");
        is_str(e.msg, "Parameter 'refcount_bits' expects a number", "number message");
        err_init(&e);
        is_int(kvopts_get_number(&o, "big", 0, &u, &e), -EINVAL, "number too large");
        is_str(e.msg, "Value '99999999999999999999999' is too large for parameter 'big'", "too large message");
        err_init(&e);
        is_int(kvopts_get_size(&o, "cs", 0, &u, &e), -EINVAL, "size out of range");
        is_str(e.msg, "Value '99999999999999999999999' is out of range for parameter 'cs'", "out of range message");
        is_int(kvopts_get_number(&o, "neg", 0, &u, NULL), 0, "number -1 accepted as qemu does");
        is_uint(u, UINT64_MAX, "-1 wraps");
        is_int(kvopts_get_number(&o, "hex", 0, &u, NULL), 0, "number base 0");
        is_uint(u, 16, "0x10 = 16");
        is_int(kvopts_get_size(&o, "absent", 4096, &u, NULL), 0, "absent size");
        is_uint(u, 4096, "absent size gives default");
        is_int(kvopts_get_number(&o, "absent", 7, &u, NULL), 0, "absent number");
        is_uint(u, 7, "absent number gives default");
        b = false;
        is_int(kvopts_get_bool(&o, "absent", true, &b, NULL), 0, "absent bool");
        ok(b, "absent bool gives default");
        static const char *const trues[] = { "y", "t", "yes" };
        static const char *const falses[] = { "n", "f", "no" };
        for (int i = 0; i < 3; i++) {
            b = false;
            is_int(kvopts_get_bool(&o, trues[i], false, &b, NULL), 0, "bool %s", trues[i]);
            ok(b, "%s is true", kvopts_get(&o, trues[i]));
            b = true;
            is_int(kvopts_get_bool(&o, falses[i], true, &b, NULL), 0, "bool %s", falses[i]);
            ok(!b, "%s is false", kvopts_get(&o, falses[i]));
        }
    }
    kvopts_release(&o);

    /* validation in option order, as qemu_opts_do_parse */
    validate_msg("cluster_size=64k,lazy_refcounts=on,nocow=on", NULL);
    validate_msg("foo=1,cluster_size=abc", "Invalid parameter 'foo'");
    validate_msg("cluster_size=abc,foo=1",
                 "Parameter 'cluster_size' expects a non-negative number below 2^64\n"
                 "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                 "and exabytes, respectively.");
    validate_msg("no", "Invalid parameter ''");
    validate_msg("help=on", "Invalid parameter 'help'");
    validate_msg("lazy_refcounts=maybe", "Parameter 'lazy_refcounts' expects 'on' or 'off'");
    validate_msg("refcount_bits=99999999999999999999999",
                 "Value '99999999999999999999999' is too large for parameter 'refcount_bits'");
    validate_msg("id=5,lazy_refcounts", NULL);   /* qemu drops id */
    {
        parse(&o, "id=1,size=1M,zzz=1,yyy=2", NULL);
        is_str(kvopts_find_unknown(&o, tables), "zzz", "first unknown key");
        kvopts_release(&o);
        parse(&o, "nocow=on,size=1", NULL);
        is_str(kvopts_find_unknown(&o, tables), NULL, "keys of the second table are known");
        kvopts_release(&o);
        ok(opt_desc_find(qcow2_opts, "compat") == &qcow2_opts[6], "opt_desc_find");
        ok(opt_desc_find(qcow2_opts, "nocow") == NULL, "opt_desc_find misses");
    }

    /* the tail of real "Formatting 'k.qcow2', fmt=qcow2 ..." lines */
    formatting("", "cluster_size=65536 extended_l2=off compression_type=zlib size=1048576 "
                   "lazy_refcounts=off refcount_bits=16");
    formatting("compat=v3,,x", "cluster_size=65536 extended_l2=off compression_type=zlib size=1048576 "
                               "compat=v3,,x lazy_refcounts=off refcount_bits=16");
    formatting("lazy_refcounts=yes", "cluster_size=65536 extended_l2=off compression_type=zlib "
                                     "size=1048576 lazy_refcounts=yes refcount_bits=16");
    formatting("refcount_bits=-1", "cluster_size=65536 extended_l2=off compression_type=zlib "
                                   "size=1048576 lazy_refcounts=off refcount_bits=-1");
    formatting("refcount_bits=0x10,cluster_size=0x1k", "cluster_size=1024 extended_l2=off "
               "compression_type=zlib size=1048576 lazy_refcounts=off refcount_bits=16");
    formatting("nolazy_refcounts,nocow=on", "cluster_size=65536 extended_l2=off compression_type=zlib "
                                            "size=1048576 lazy_refcounts=off refcount_bits=16 nocow=on");
    validate_msg("nocow", "Invalid parameter 'cow'");   /* real: qemu-img create -f raw -o nocow */

    /* is_valid_option_list */
    ok(kvopts_list_valid("a=1"), "plain list valid");
    ok(kvopts_list_valid("compat=0.10,,"), "even trailing commas valid");
    ok(!kvopts_list_valid("compat=0.10,"), "odd trailing comma invalid");
    ok(!kvopts_list_valid("a=1,,,"), "three trailing commas invalid");
    ok(!kvopts_list_valid(",compat=0.10"), "leading comma invalid");
    ok(!kvopts_list_valid(""), "empty list invalid");

    /* escaping */
    {
        char buf[12] = "file=";
        kvopts_escape_append(buf, sizeof(buf), "a,b");
        is_str(buf, "file=a,,b", "escape doubles commas");
        kvopts_escape_append(buf, sizeof(buf), ",,,");
        is_str(buf, "file=a,,b,,", "truncation never splits a comma pair");
        char small[4] = "";
        kvopts_escape_append(small, sizeof(small), "abcdef");
        is_str(small, "abc", "truncated and terminated");
        struct strbuf sb = STRBUF_INIT;
        kvopts_escape_strbuf(&sb, "x,y,,z");
        is_str(strbuf_str(&sb), "x,,y,,,,z", "strbuf escape");
        strbuf_release(&sb);
    }

    return done_testing();
}

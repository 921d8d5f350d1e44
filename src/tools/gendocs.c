/* qimg-gendocs: writes the man page (qimg.1) and the bash completion of qimg
 * from the tables the program itself uses, so that neither can drift:
 *
 *   - the command synopses and parameter notes of qemu-img 7.2's --help
 *     text (help_head in src/cmd/help.c, which qimg prints byte for byte),
 *     checked against the command table (cmd_find);
 *   - qimg's own extra options (help_extensions in src/cmd/help.c);
 *   - the driver registry: format names, which formats create images, and
 *     each driver's create_opts / amend_opts tables with their help texts.
 *
 * Usage: qimg-gendocs man | bash-completion   (output on stdout)
 *
 * The output depends only on these tables and the version: no dates, so a
 * committed copy can be diffed against a fresh one (tests/interop/help.sh). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"
#include "block/registry.h"
#include "cmd/cmd.h"
#include "config.h"

#define MAX_CMDS 32
#define MAX_OPTS 48
#define MAX_TOKS 160
#define MAX_LINE 1024
#define MAX_DRIVERS 64

/* One option of a command as its synopsis shows it. */
struct opt {
    char name[48];      /* "-f", "--output" */
    bool eq;            /* written "--name=arg" */
    char arg[48];       /* placeholder ("fmt"), "a|b" for [a | b], "" for none */
    const char *help;   /* extensions only */
};

struct cmd {
    char name[32];
    char synopsis[MAX_LINE];    /* the text after the name, as --help prints it */
    struct opt opts[MAX_OPTS];
    size_t nopts;
    char operands[8][32];       /* dd's key=value operands: "bs" ... */
    size_t noperands;
    const char *help;           /* qimg's own commands: what it does */
};

static struct cmd cmds[MAX_CMDS];
static size_t ncmds;

static void die(const char *msg, const char *what)
{
    fprintf(stderr, "qimg-gendocs: %s%s%s\n", msg, what ? ": " : "", what ? what : "");
    exit(EXIT_FAILURE);
}

static void copy(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size)
        die("text too long", src);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ------------------------------------------------------------ parsing */

/* Split a synopsis into words and the punctuation [ ] ( ) |. */
static size_t tokenize(const char *s, char toks[][64])
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        size_t len = strchr("[]()|", *s) ? 1 : strcspn(s, " []()|");
        if (n == MAX_TOKS)
            die("synopsis too long", s);
        copy(toks[n++], 64, s, len);
        s += len;
    }
    return n;
}

static bool is_word(const char *t)
{
    return t[0] && !strchr("[]()|-", t[0]);
}

static struct opt *add_opt(struct cmd *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nopts; i++)
        if (strlen(c->opts[i].name) == len && !strncmp(c->opts[i].name, name, len))
            return NULL;    /* listed twice: keep the first */
    if (c->nopts == MAX_OPTS)
        die("too many options", c->name);
    struct opt *o = &c->opts[c->nopts++];
    memset(o, 0, sizeof(*o));
    copy(o->name, sizeof(o->name), name, len);
    return o;
}

static void parse_synopsis(struct cmd *c)
{
    static char toks[MAX_TOKS][64];
    size_t n = tokenize(c->synopsis, toks);

    for (size_t i = 0; i < n; i++) {
        const char *t = toks[i];
        const char *eq = strchr(t, '=');
        if (t[0] != '-' || t[1] == '\0') {
            /* dd's operands: bs=block_size if=input ... */
            if (eq && is_word(t) && c->noperands < 8)
                copy(c->operands[c->noperands++], 32, t, (size_t)(eq - t));
            continue;
        }
        if (eq) {
            struct opt *o = add_opt(c, t, (size_t)(eq - t));
            if (o) {
                o->eq = true;
                copy(o->arg, sizeof(o->arg), eq + 1, strlen(eq + 1));
            }
            continue;
        }
        struct opt *o = add_opt(c, t, strlen(t));
        if (!o)
            continue;
        if (i + 1 < n && is_word(toks[i + 1])) {
            copy(o->arg, sizeof(o->arg), toks[i + 1], strlen(toks[i + 1]));
        } else if (i + 1 < n && !strcmp(toks[i + 1], "[")) {
            /* "-r [leaks | all]": a choice of words */
            char buf[48] = "";
            size_t j = i + 2;
            for (; j < n && strcmp(toks[j], "]"); j++) {
                if (!strcmp(toks[j], "|"))
                    continue;
                if (!is_word(toks[j]))
                    break;
                if (strlen(buf) + strlen(toks[j]) + 2 > sizeof(buf))
                    die("choice too long", t);
                if (buf[0])
                    strcat(buf, "|");
                strcat(buf, toks[j]);
            }
            if (j < n && !strcmp(toks[j], "]"))
                copy(o->arg, sizeof(o->arg), buf, strlen(buf));
        }
    }
}

static void parse_help(void)
{
    const char *p = strstr(help_head, "\nCommand syntax:\n");
    if (!p)
        die("no \"Command syntax:\" in the help text", NULL);
    p += strlen("\nCommand syntax:\n");
    while (*p == ' ') {
        const char *end = strchr(p, '\n');
        if (!end)
            die("unterminated synopsis", p);
        while (*p == ' ')
            p++;
        size_t nl = strcspn(p, " \n");
        if (ncmds == MAX_CMDS)
            die("too many commands", NULL);
        struct cmd *c = &cmds[ncmds++];
        copy(c->name, sizeof(c->name), p, nl);
        p += nl;
        while (*p == ' ')
            p++;
        copy(c->synopsis, sizeof(c->synopsis), p, (size_t)(end - p));
        if (!cmd_find(c->name))
            die("the help text names a command the command table lacks", c->name);
        parse_synopsis(c);
        p = end + 1;
    }
    /* qimg's own commands, then the options of commands */
    for (const struct help_ext *e = help_extensions; e->cmd; e++) {
        if (e->opt || !e->arg)
            continue;
        if (!cmd_find(e->cmd)) {
            fprintf(stderr, "qimg-gendocs: warning: no command '%s' in the command table\n",
                    e->cmd);
            continue;
        }
        if (ncmds == MAX_CMDS)
            die("too many commands", NULL);
        struct cmd *c = &cmds[ncmds++];
        copy(c->name, sizeof(c->name), e->cmd, strlen(e->cmd));
        copy(c->synopsis, sizeof(c->synopsis), e->arg, strlen(e->arg));
        c->help = e->help;
        parse_synopsis(c);
    }
    for (const struct help_ext *e = help_extensions; e->cmd; e++) {
        if (!e->opt || !e->cmd[0] || !strcmp(e->cmd, "$"))
            continue;
        struct cmd *c = NULL;
        for (size_t i = 0; i < ncmds; i++)
            if (!strcmp(cmds[i].name, e->cmd))
                c = &cmds[i];
        if (!c)
            die("extension of an unknown command", e->cmd);
        struct opt *o = add_opt(c, e->opt, strlen(e->opt));
        if (!o)
            die("extension already listed by --help", e->opt);
        o->eq = e->arg && !strncmp(e->opt, "--", 2);
        if (e->arg)
            copy(o->arg, sizeof(o->arg), e->arg, strlen(e->arg));
        o->help = e->help;
    }
}

static bool is_global_ext(const struct help_ext *e)
{
    return e->opt && !e->cmd[0];
}

static bool is_env_ext(const struct help_ext *e)
{
    return e->opt && !strcmp(e->cmd, "$");
}

static bool is_cmd_ext(const struct help_ext *e)
{
    return !e->opt;
}

static bool is_opt_ext(const struct help_ext *e)
{
    return e->opt && e->cmd[0] && strcmp(e->cmd, "$");
}

/* ------------------------------------------------------------ drivers */

static const struct blk_driver *drivers[MAX_DRIVERS];
static size_t ndrivers;

static int cmp_drv(const void *a, const void *b)
{
    return strcmp((*(const struct blk_driver *const *)a)->name,
                  (*(const struct blk_driver *const *)b)->name);
}

static void load_drivers(void)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);
    if (n > MAX_DRIVERS)
        die("too many drivers", NULL);
    for (size_t i = 0; i < n; i++)
        drivers[ndrivers++] = d[i];
    qsort(drivers, ndrivers, sizeof(drivers[0]), cmp_drv);
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

static void names_where(bool (*want)(const struct blk_driver *))
{
    bool first = true;
    for (size_t i = 0; i < ndrivers; i++) {
        if (!want(drivers[i]))
            continue;
        printf("%s%s", first ? "" : " ", drivers[i]->name);
        first = false;
    }
}

static bool any_driver(const struct blk_driver *d)
{
    (void)d;
    return true;
}

/* ------------------------------------------------------------ man page */

/* Text for a roff line: backslashes, hyphens, and a leading control char. */
static void roff(const char *s, size_t len)
{
    if (len && (s[0] == '.' || s[0] == '\''))
        fputs("\\&", stdout);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\')
            fputs("\\e", stdout);
        else if (s[i] == '-')
            fputs("\\-", stdout);
        else
            putchar(s[i]);
    }
}

static void roffs(const char *s)
{
    roff(s, strlen(s));
}

/* The parameter notes of the help text ("Command parameters:" onwards):
 * each "  'x' text" entry with its continuation lines becomes a .TP item. */
static void man_parameters(void)
{
    const char *p = strstr(help_head, "\nCommand parameters:\n");
    if (!p)
        die("no \"Command parameters:\" in the help text", NULL);
    p++;
    bool in_item = false;
    while (*p) {
        size_t len = strcspn(p, "\n");
        size_t ind = strspn(p, " ");
        if (len == 0) {
            in_item = false;
        } else if (ind == 0) {
            printf(".SS ");
            roff(p, len && p[len - 1] == ':' ? len - 1 : len);
            printf("\n");
            in_item = false;
        } else if (ind == 2 && p[2] == '\'') {
            const char *q = memchr(p + 3, '\'', len - 3);
            if (!q)
                die("unterminated parameter name", p);
            printf(".TP\n.B ");
            roff(p + 3, (size_t)(q - p - 3));
            printf("\n");
            const char *rest = q + 1;
            while (*rest == ' ')
                rest++;
            if (rest < p + len) {
                roff(rest, (size_t)(p + len - rest));
                printf("\n");
            }
            in_item = true;
        } else {
            if (!in_item)
                printf(".PP\n");
            roff(p + ind, len - ind);
            printf("\n");
            in_item = true;
        }
        p += len;
        if (*p == '\n')
            p++;
    }
}

static void man_opt_table(const struct opt_desc *t)
{
    for (; t && t->name; t++) {
        printf(".TP\n.BI ");
        roffs(t->name);
        printf(" = \"<");
        roffs(type_name(t->type));
        printf(">\"\n");
        if (t->help)
            roffs(t->help);
        else
            printf("(no description)");
        printf("\n");
        if (t->def) {
            printf(".br\nDefault: ");
            roffs(t->def);
            printf(".\n");
        }
    }
}

static void man_list(bool (*want)(const struct blk_driver *))
{
    bool first = true;
    for (size_t i = 0; i < ndrivers; i++) {
        if (!want(drivers[i]))
            continue;
        printf("%s\\fB", first ? "" : ", ");
        roffs(drivers[i]->name);
        printf("\\fP");
        first = false;
    }
    printf(first ? "none.\n" : ".\n");
}

static bool is_rw_format(const struct blk_driver *d)
{
    return d->kind == BLK_KIND_FORMAT && d->create;
}

static bool is_rw_nocreate_format(const struct blk_driver *d)
{
    return d->kind == BLK_KIND_FORMAT && !d->create && d->pwrite;
}

static bool is_ro_format(const struct blk_driver *d)
{
    return d->kind == BLK_KIND_FORMAT && !d->create && !d->pwrite;
}

static bool is_protocol(const struct blk_driver *d)
{
    return d->kind == BLK_KIND_PROTOCOL;
}

static size_t count_where(bool (*want)(const struct blk_driver *))
{
    size_t n = 0;
    for (size_t i = 0; i < ndrivers; i++)
        n += want(drivers[i]);
    return n;
}

static void gen_man(void)
{
    printf(".\\\" Generated by qimg-gendocs (src/tools/gendocs.c) from qimg's own tables:\n"
           ".\\\" do not edit; change src/cmd/help.c or the drivers' option tables.\n");
    /* what the --help of the build that wrote this page lists (tests) */
    printf(".\\\" formats: ");
    names_where(any_driver);
    printf("\n");
    printf(".TH QIMG 1 \"\" \"qimg %s\" \"User Commands\"\n", QIMG_VERSION);
    printf(".nh\n.ad l\n");
    printf(".SH NAME\nqimg \\- disk image utility compatible with qemu\\-img 7.2\n");
    printf(".SH SYNOPSIS\n.B qimg\n[\\fIstandard options\\fP] \\fIcommand\\fP [\\fIcommand options\\fP]\n");
    printf(".SH DESCRIPTION\n"
           "\\fBqimg\\fP creates, converts, checks and modifies disk images. It is a drop\\-in\n"
           "replacement for \\fBqemu\\-img\\fP(1) of QEMU 7.2: the same commands, options,\n"
           "messages, output and exit codes, so that scripts written for \\fBqemu\\-img\\fP\n"
           "keep working.\n"
           ".PP\n"
           "Invoked under the name \\fBqemu\\-img\\fP (for example through a symbolic link),\n"
           "qimg names itself \\fBqemu\\-img\\fP in its messages and version line.\n");
    printf(".SH STANDARD OPTIONS\n"
           ".TP\n.BR \\-h \", \" \\-\\-help\n"
           "Display the help text (synopses and the supported formats) and exit.\n"
           ".TP\n.BR \\-V \", \" \\-\\-version\n"
           "Output version information and exit.\n"
           ".TP\n.BR \\-T \", \" \\-\\-trace \" [[enable=]\\fIpattern\\fP][,events=\\fIfile\\fP][,file=\\fIfile\\fP]\"\n"
           "Tracing options; accepted and checked as qemu\\-img does, but qimg has no trace\n"
           "events, so nothing is traced.\n");
    for (const struct help_ext *e = help_extensions; e->cmd; e++) {
        if (!is_global_ext(e))
            continue;
        printf(".TP\n\\fB");
        roffs(e->opt);
        printf("\\fP");
        if (e->arg) {
            printf("=\\fI");
            roffs(e->arg);
            printf("\\fP");
        }
        printf("\n(qimg only) ");
        roffs(e->help);
        printf("\n");
    }

    printf(".SH COMMANDS\n"
           "Every command also accepts \\fB\\-h\\fP/\\fB\\-\\-help\\fP, which prints the help text.\n");
    for (size_t i = 0; i < ncmds; i++) {
        const struct cmd *c = &cmds[i];
        printf(".TP\n.B %s\n", c->name);
        roffs(c->synopsis);
        printf("\n");
        if (c->help) {
            printf(".br\n(qimg only) ");
            roffs(c->help);
            printf("\n");
        }
        for (size_t j = 0; j < c->nopts; j++) {
            const struct opt *o = &c->opts[j];
            if (!o->help)
                continue;
            printf(".br\nqimg extension: \\fB");
            roffs(o->name);
            printf("\\fP%s\\fI", o->arg[0] ? (o->eq ? "=" : " ") : "");
            roffs(o->arg);
            printf("\\fP \\(em ");
            roffs(o->help);
            printf("\n");
        }
    }

    printf(".SH PARAMETERS\n");
    man_parameters();

    printf(".SH QIMG EXTENSIONS\n"
           "Options and commands qimg has beyond qemu\\-img 7.2 (they are not in\n"
           "\\fB\\-\\-help\\fP, which stays identical to qemu\\-img's):\n");
    for (const struct help_ext *e = help_extensions; e->cmd; e++) {
        if (is_cmd_ext(e)) {
            printf(".TP\n\\fB");
            roffs(e->cmd);
            printf("\\fP ");
            roffs(e->arg);
            printf("\n");
            roffs(e->help);
            printf("\n");
            continue;
        }
        if (!is_opt_ext(e) && !is_global_ext(e))
            continue;
        printf(".TP\n\\fB");
        roffs(e->cmd[0] ? e->cmd : "(standard option)");
        printf("\\fP \\fB");
        roffs(e->opt);
        printf("\\fP");
        if (e->arg) {
            printf("%s\\fI", !strncmp(e->opt, "--", 2) ? "=" : " ");
            roffs(e->arg);
            printf("\\fP");
        }
        printf("\n");
        roffs(e->help);
        printf("\n");
    }

    printf(".SH FORMATS\n"
           "Formats that can be created and written (\\fB\\-f\\fP of \\fBcreate\\fP, \\fB\\-O\\fP of\n"
           "\\fBconvert\\fP and \\fBmeasure\\fP):\n");
    man_list(is_rw_format);
    if (count_where(is_rw_nocreate_format)) {
        printf(".PP\nFormats that are written but not created:\n");
        man_list(is_rw_nocreate_format);
    }
    printf(".PP\nRead\\-only formats:\n");
    man_list(is_ro_format);
    printf(".PP\nProtocols (the layer below the format; \\fB\\-f\\fP accepts their names too):\n");
    man_list(is_protocol);
    printf(".PP\nWithout \\fB\\-f\\fP the format is probed from the image's contents, with\n"
           "qemu\\-img's warning when it guesses raw.\n");

    printf(".SH CREATION OPTIONS\n"
           "The keys of \\fB\\-o\\fP for \\fBcreate\\fP, \\fBconvert\\fP and \\fBmeasure\\fP, per format,\n"
           "in the order of the \\fIFormatting\\fP line. \\fB\\-o help\\fP lists them (sorted); with\n"
           "a target filename the protocol's options are added.\n");
    for (size_t i = 0; i < ndrivers; i++) {
        const struct blk_driver *d = drivers[i];
        if (!d->create || !d->create_opts)
            continue;
        printf(".SS %s%s\n", d->name, d->kind == BLK_KIND_PROTOCOL ? " (protocol)" : "");
        man_opt_table(d->create_opts);
    }

    printf(".SH AMEND OPTIONS\n"
           "The keys of \\fB\\-o\\fP for \\fBamend\\fP (\\fBamend \\-f\\fP \\fIfmt\\fP \\fB\\-o help\\fP\n"
           "lists them). Other formats do not support amendment.\n");
    for (size_t i = 0; i < ndrivers; i++) {
        const struct blk_driver *d = drivers[i];
        if (!d->amend || !d->amend_opts)
            continue;
        printf(".SS %s\n", d->name);
        man_opt_table(d->amend_opts);
    }

    printf(".SH EXIT STATUS\n"
           "As qemu\\-img's:\n"
           ".TP\n.B 0\nSuccess (also after printing help).\n"
           ".TP\n.B 1\nAn error; the message is on standard error. For \\fBcheck\\fP: the check\n"
           "could not be completed.\n"
           ".PP\n\\fBcheck\\fP:\n"
           ".TP\n.B 0\nNo errors found (or all repaired).\n"
           ".TP\n.B 2\nThe image is corrupted.\n"
           ".TP\n.B 3\nOnly leaked clusters were found (no corruption).\n"
           ".TP\n.B 63\nThe format does not support checks.\n"
           ".PP\n\\fBcompare\\fP:\n"
           ".TP\n.B 0\nThe images are identical.\n"
           ".TP\n.B 1\nThe images differ.\n"
           ".TP\n.B 2\nAn image could not be opened, or another error.\n"
           ".TP\n.B 3\nError checking a sector allocation.\n"
           ".TP\n.B 4\nError reading data.\n"
           ".PP\nA failed or interrupted \\fBcreate\\fP or \\fBconvert\\fP removes the image it\n"
           "was creating.\n");

    printf(".SH ENVIRONMENT\n"
           "The name qimg was invoked under (argv[0]) decides whether messages start\n"
           "with \\fBqemu\\-img\\fP or \\fBqimg\\fP.\n");
    bool any_env = false;
    for (const struct help_ext *e = help_extensions; e->cmd; e++) {
        if (!is_env_ext(e))
            continue;
        printf(".TP\n.B ");
        roffs(e->opt);
        printf("\n");
        roffs(e->help);
        printf("\n");
        any_env = true;
    }
    if (!any_env)
        printf(".PP\nqimg reads no environment variables of its own.\n");
    printf(".SH FILES\n"
           ".TP\n.I $PREFIX/share/bash\\-completion/completions/qimg\n"
           "The bash completion (commands, options, formats, \\fB\\-o\\fP keys).\n");
    printf(".SH SEE ALSO\n\\fBqemu\\-img\\fP(1), \\fBqemu\\-io\\fP(1), \\fBqemu\\-nbd\\fP(1)\n");
}

/* ------------------------------------------------------------ bash completion */

/* What an option's argument is, from its placeholder in the synopsis. */
static const char *arg_kind(const char *cmd, const char *arg)
{
    if (!strcmp(cmd, "create") && !strcmp(arg, "fmt"))
        return "wfmt";      /* create makes images: only formats that can */
    static const struct { const char *arg, *kind; } map[] = {
        { "fmt", "fmt" }, { "backing_fmt", "fmt" }, { "source_fmt", "fmt" },
        { "src_fmt", "fmt" }, { "output_fmt", "wfmt" },
        { "cache", "cache" }, { "src_cache", "cache" },
        { "ofmt", "ofmt" }, { "objectdef", "object" }, { "options", "okeys" },
        { "filename", "file" }, { "backing_file", "file" }, { "source_file", "file" },
        { "base", "file" }, { "prealloc", "prealloc" }, { "aio", "aio" },
    };
    if (!arg[0])
        return NULL;
    if (strchr(arg, '|'))
        return "choice";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i].arg, arg))
            return map[i].kind;
    return "none";
}

static bool can_create(const struct blk_driver *d)
{
    return d->create != NULL && d->kind == BLK_KIND_FORMAT;
}

static void keys(const struct opt_desc *t, const struct opt_desc *extra)
{
    bool first = true;
    for (const struct opt_desc *x = t; x && x->name; x++) {
        printf("%s%s", first ? "" : " ", x->name);
        first = false;
    }
    for (const struct opt_desc *x = extra; x && x->name; x++) {
        if (opt_desc_find(t, x->name))
            continue;
        printf("%s%s", first ? "" : " ", x->name);
        first = false;
    }
}

static const char completion_body[] =
    "_qimg_values() { # KIND CUR CMD FMT\n"
    "    local kind=$1 cur=$2 pre last k\n"
    "    case $kind in\n"
    "    fmt) compgen -W \"$_qimg_formats\" -- \"$cur\" ;;\n"
    "    wfmt) compgen -W \"$_qimg_create_formats\" -- \"$cur\" ;;\n"
    "    cache) compgen -W \"none writeback writethrough directsync unsafe\" -- \"$cur\" ;;\n"
    "    ofmt) compgen -W \"human json\" -- \"$cur\" ;;\n"
    "    prealloc) compgen -W \"off metadata falloc full\" -- \"$cur\" ;;\n"
    "    aio) compgen -W \"threads native io_uring\" -- \"$cur\" ;;\n"
    "    object) compgen -W \"secret,id=\" -- \"$cur\" ;;\n"
    "    file) compgen -f -- \"$cur\" ;;\n"
    "    choice:*) compgen -W \"${kind#choice:}\" -- \"$cur\" ;;\n"
    "    okeys)\n"
    "        # a comma-separated key=value list: complete the last key\n"
    "        pre=; last=$cur\n"
    "        case $cur in *,*) pre=${cur%,*},; last=${cur##*,} ;; esac\n"
    "        case $last in *=*) return 0 ;; esac\n"
    "        if [ \"$3\" = amend ]; then k=$(_qimg_amend_keys \"$4\"); else k=$(_qimg_create_keys \"${4:-raw}\"); fi\n"
    "        [ -z \"$pre\" ] && k=\"help $k\"\n"
    "        for k in $k; do\n"
    "            case $k in \"$last\"*) [ \"$k\" = help ] && echo help || echo \"$pre$k=\" ;; esac\n"
    "        done ;;\n"
    "    esac\n"
    "}\n"
    "\n"
    "_qimg() {\n"
    "    local -a words\n"
    "    local cword cur prev i w cmd= ci=0 kind fmt= ofmt= opt trim=\n"
    "    COMPREPLY=()\n"
    "    if [ -n \"${COMP_LINE:-}\" ]; then\n"
    "        # words split at blanks only, so that --output=json and\n"
    "        # key=value,key=value stay one word whatever COMP_WORDBREAKS says\n"
    "        local line=${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}\n"
    "        read -ra words <<< \"$line\"\n"
    "        case $line in *[[:blank:]]|'') words+=(\"\") ;; esac\n"
    "        cword=$((${#words[@]} - 1))\n"
    "        case ${COMP_WORDBREAKS-} in *=*) trim=1 ;; esac\n"
    "    else\n"
    "        words=(\"${COMP_WORDS[@]}\")\n"
    "        cword=$COMP_CWORD\n"
    "    fi\n"
    "    cur=${words[cword]-}\n"
    "    prev=\n"
    "    [ \"$cword\" -gt 0 ] && prev=${words[cword-1]}\n"
    "\n"
    "    # the command: the first word after the standard options\n"
    "    i=1\n"
    "    while [ \"$i\" -lt \"$cword\" ]; do\n"
    "        w=${words[i]}\n"
    "        case $w in\n"
    "        -T|--trace) i=$((i + 2)); continue ;;\n"
    "        -*) ;;\n"
    "        *) cmd=$w; ci=$i; break ;;\n"
    "        esac\n"
    "        i=$((i + 1))\n"
    "    done\n"
    "    if [ -z \"$cmd\" ]; then\n"
    "        [ \"$i\" -gt \"$cword\" ] && return 0      # the argument of -T\n"
    "        case $cur in\n"
    "        -*) COMPREPLY=($(compgen -W \"$_qimg_global_opts\" -- \"$cur\")) ;;\n"
    "        *) COMPREPLY=($(compgen -W \"$_qimg_commands\" -- \"$cur\")) ;;\n"
    "        esac\n"
    "        return 0\n"
    "    fi\n"
    "\n"
    "    # the format named so far (-O wins for -o of convert/measure)\n"
    "    for ((i = ci + 1; i < cword; i++)); do\n"
    "        case ${words[i]} in\n"
    "        -f) fmt=${words[i + 1]-} ;;\n"
    "        -O) ofmt=${words[i + 1]-} ;;\n"
    "        esac\n"
    "    done\n"
    "    case $cmd in convert|measure) fmt=$ofmt ;; esac\n"
    "\n"
    "    local -a reply=()\n"
    "    if [[ $cur == --*=* ]]; then\n"
    "        opt=${cur%%=*}\n"
    "        kind=$(_qimg_arg \"$cmd\" \"$opt\")\n"
    "        if [ -n \"$kind\" ]; then\n"
    "            while IFS= read -r w; do reply+=(\"$opt=$w\"); done < <(_qimg_values \"$kind\" \"${cur#*=}\" \"$cmd\" \"$fmt\")\n"
    "        fi\n"
    "    elif [ \"$((cword - 1))\" -gt \"$ci\" ] && kind=$(_qimg_arg \"$cmd\" \"$prev\") && [ -n \"$kind\" ]; then\n"
    "        while IFS= read -r w; do reply+=(\"$w\"); done < <(_qimg_values \"$kind\" \"$cur\" \"$cmd\" \"$fmt\")\n"
    "    elif [[ $cur == -* ]]; then\n"
    "        while IFS= read -r w; do reply+=(\"$w\"); done < <(compgen -W \"$(_qimg_opts \"$cmd\")\" -- \"$cur\")\n"
    "    elif [ \"$cmd\" = dd ] && [[ $cur != *=* ]]; then\n"
    "        while IFS= read -r w; do reply+=(\"$w\"); done < <(compgen -W \"$_qimg_dd_operands\" -- \"$cur\")\n"
    "    elif [ \"$cmd\" = dd ]; then\n"
    "        case ${cur%%=*} in\n"
    "        if|of) while IFS= read -r w; do reply+=(\"${cur%%=*}=$w\"); done < <(compgen -f -- \"${cur#*=}\") ;;\n"
    "        esac\n"
    "    else\n"
    "        while IFS= read -r w; do reply+=(\"$w\"); done < <(compgen -f -- \"$cur\")\n"
    "    fi\n"
    "\n"
    "    # bash replaces only the text after the last '=' when '=' breaks words\n"
    "    if [ -n \"$trim\" ] && [[ $cur == *=* ]]; then\n"
    "        local drop=${cur%\"${cur##*=}\"}\n"
    "        for i in \"${!reply[@]}\"; do reply[i]=${reply[i]#\"$drop\"}; done\n"
    "    fi\n"
    "    COMPREPLY=(\"${reply[@]}\")\n"
    "    for w in \"${COMPREPLY[@]}\"; do\n"
    "        case $w in *=|*,) compopt -o nospace 2>/dev/null; break ;; esac\n"
    "    done\n"
    "    return 0\n"
    "}\n"
    "\n"
    "complete -o filenames -F _qimg qimg\n"
    "# Installed as completions/qemu-img (only when qimg is installed as\n"
    "# qemu-img), the same function serves that name.\n"
    "case ${BASH_SOURCE[0]##*/} in qemu-img) complete -o filenames -F _qimg qemu-img ;; esac\n";

static void gen_completion(void)
{
    printf("# bash completion for qimg                                  -*- shell-script -*-\n"
           "# Generated by qimg-gendocs (src/tools/gendocs.c) from qimg's own tables:\n"
           "# do not edit; change src/cmd/help.c or the drivers' option tables.\n\n");
    printf("_qimg_commands=\"");
    for (size_t i = 0; i < ncmds; i++)
        printf("%s%s", i ? " " : "", cmds[i].name);
    printf("\"\n_qimg_global_opts=\"-h --help -V --version -T --trace");
    for (const struct help_ext *e = help_extensions; e->cmd; e++)
        if (is_global_ext(e))
            printf(" %s%s", e->opt, e->arg ? "=" : "");
    printf("\"\n_qimg_formats=\"");
    names_where(any_driver);
    printf("\"\n_qimg_create_formats=\"");
    names_where(can_create);
    printf("\"\n_qimg_dd_operands=\"");
    for (size_t i = 0; i < ncmds; i++)
        for (size_t j = 0; j < cmds[i].noperands; j++)
            printf("%s%s=", j ? " " : "", cmds[i].operands[j]);
    printf("\"\n\n");

    printf("_qimg_opts() { # CMD: its options\n    case $1 in\n");
    for (size_t i = 0; i < ncmds; i++) {
        printf("    %s) echo \"-h --help", cmds[i].name);
        for (size_t j = 0; j < cmds[i].nopts; j++) {
            const struct opt *o = &cmds[i].opts[j];
            if (!strcmp(o->name, "-h") || !strcmp(o->name, "--help"))
                continue;
            printf(" %s%s", o->name, o->eq ? "=" : "");
        }
        printf("\" ;;\n");
    }
    printf("    esac\n}\n\n");

    printf("_qimg_arg() { # CMD OPT: the kind of OPT's argument, empty if it takes none\n"
           "    case \"$1 $2\" in\n");
    for (size_t i = 0; i < ncmds; i++)
        for (size_t j = 0; j < cmds[i].nopts; j++) {
            const struct opt *o = &cmds[i].opts[j];
            const char *k = arg_kind(cmds[i].name, o->arg);
            if (!k)
                continue;
            printf("    \"%s %s\") echo ", cmds[i].name, o->name);
            if (!strcmp(k, "choice")) {
                printf("\"choice:");
                for (const char *c = o->arg; *c; c++)
                    putchar(*c == '|' ? ' ' : *c);
                printf("\"");
            } else {
                printf("%s", k);
            }
            printf(" ;;\n");
        }
    printf("    esac\n}\n\n");

    const struct blk_driver *file = blk_find_format("file");
    printf("_qimg_create_keys() { # FMT: -o keys (with the file protocol's)\n    case $1 in\n");
    for (size_t i = 0; i < ndrivers; i++) {
        const struct blk_driver *d = drivers[i];
        if (!d->create || !d->create_opts)
            continue;
        printf("    %s) echo \"", d->name);
        keys(d->create_opts, file && d != file ? file->create_opts : NULL);
        printf("\" ;;\n");
    }
    printf("    esac\n}\n\n");
    printf("_qimg_amend_keys() { # FMT: amend's -o keys\n    case $1 in\n");
    for (size_t i = 0; i < ndrivers; i++) {
        const struct blk_driver *d = drivers[i];
        if (!d->amend || !d->amend_opts)
            continue;
        printf("    %s) echo \"", d->name);
        keys(d->amend_opts, NULL);
        printf("\" ;;\n");
    }
    printf("    esac\n}\n\n");
    fputs(completion_body, stdout);
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "man") && strcmp(argv[1], "bash-completion"))) {
        fprintf(stderr, "usage: qimg-gendocs man | bash-completion\n");
        return EXIT_FAILURE;
    }
    parse_help();
    load_drivers();
    if (!strcmp(argv[1], "man"))
        gen_man();
    else
        gen_completion();
    if (fflush(stdout) != 0 || ferror(stdout))
        die("write error", NULL);
    return EXIT_SUCCESS;
}

/* json_diag(): qemu 7.2's JSON reader messages for `json:` filenames.
 * Every expectation was taken from the real tool:
 *   qemu-img info 'json:<text>'  ->  "...: Could not parse the JSON options: <want>"
 * (want NULL: qemu parsed the text as one JSON value). */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util/jsondiag.h"

static void diag(const char *text, const char *want)
{
    char *got = json_diag(text);

    is_str(got, want, "json:%.40s", text);
    free(got);
}

static void norm(const char *text, const char *want)
{
    char *got = json_diag_normalize(text);

    is_str(got, want, "normalize %s", text);
    free(got);
}

static char *repeat(const char *unit, int n, const char *tail)
{
    size_t u = strlen(unit), t = strlen(tail);
    char *s = malloc(u * (size_t)n + t + 1);

    for (int i = 0; i < n; i++)
        memcpy(s + u * (size_t)i, unit, u);
    memcpy(s + u * (size_t)n, tail, t + 1);
    return s;
}

int main(void)
{
    char *s;

    /* accepted */
    diag("{\"a\":1}", NULL);
    diag("{\"a\":1} ", NULL);
    diag("\t{\"a\":1}\r\n", NULL);
    diag("1", NULL);
    diag("[]", NULL);
    diag("null", NULL);
    diag("{\"a\":\"\xc3\xa9\"}", NULL);
    diag("{\"a\":\"\\/\\b\\f\\n\\r\\t\"}", NULL);
    diag("{\"a\":\"\\u0000\"}", NULL);
    diag("{\"a\":\"\xc0\x80\"}", NULL);
    diag("{\"a\":99999999999999999999999}", NULL);
    diag("{'driver':'raw','file':{'driver':'file','filename':'/tmp/jd.raw'}}", NULL);

    /* nothing, or more than one value */
    diag("", "Expecting a JSON value");
    diag(" ", "Expecting a JSON value");
    diag("{\"a\":1}x", "Expecting at most one JSON value");
    diag("{\"a\":1}  {", "Expecting at most one JSON value");
    diag("{\"a\":1}]", "Expecting at most one JSON value");

    /* lexer errors */
    diag("01", "JSON parse error, stray '01'");
    diag("-", "JSON parse error, stray '-'");
    diag("{\"a\":-x}", "JSON parse error, stray '-x'");
    diag("1.5e", "JSON parse error, stray '1.5e'");
    diag("{\"a\":1.5e}", "JSON parse error, stray '1.5e}'");
    diag("True", "JSON parse error, stray 'T'");
    diag("{@}", "JSON parse error, stray '@'");
    diag("{\"a\":.5}", "JSON parse error, stray '.'");
    diag("\"abc", "JSON parse error, stray '\"abc'");
    diag("{\"a\":\"\x01\"}", "JSON parse error, stray '\"\x01'");
    diag("{\"a\":\"\xfe\"}", "JSON parse error, stray '\"\xfe'");
    diag("\x0c{}", "JSON parse error, stray '\x0c'");

    /* parser errors */
    diag("{\"driver\":\"qcow2\",", "JSON parse error, premature EOI");
    diag("[", "JSON parse error, premature EOI");
    diag("{\"a\":tru}", "JSON parse error, invalid keyword 'tru'");
    diag("[tRue", "JSON parse error, stray 'R'");
    diag("tRue", "JSON parse error, invalid keyword 't'");
    diag("{\"a\":nullx}", "JSON parse error, invalid keyword 'nullx'");
    diag("{\"a\":\"b\\q\"}", "JSON parse error, invalid escape sequence in string");
    diag("{\"a\":\"\xc3\"}", "JSON parse error, invalid UTF-8 sequence in string");
    diag("{\"a\":\"\xed\xa0\x80\"}", "JSON parse error, invalid UTF-8 sequence in string");
    diag("{\"a\":1,\"a\":2}", "JSON parse error, duplicate key");
    diag("{\"a\":1,\"\\u0061\":2}", "JSON parse error, duplicate key");
    diag("{'a\\'b':1,'a\\'b':2}", "JSON parse error, duplicate key");
    diag("[1 2]", "JSON parse error, expected separator in list");
    diag("{\"a\" 1}", "JSON parse error, missing : in object pair");
    diag("{1:2}", "JSON parse error, key is not a string in object");
    diag("{{}:1}", "JSON parse error, key is not a string in object");
    diag("{\"a\":1 \"b\":2}", "JSON parse error, expected separator in dict");
    diag("{\"a\":[1,2}", "JSON parse error, expected separator in list");
    diag("{\"a\":}", "JSON parse error, expecting value");
    diag("[1,]", "JSON parse error, expecting value");
    diag("]", "JSON parse error, expecting value");
    diag("{]", "JSON parse error, expecting value");
    diag("{\"a\":\"\\uD800\"}", "JSON parse error, \\uD800 is not a valid Unicode character");
    diag("{\"a\":\"\\uD800\\u0041\"}", "JSON parse error, \\uD800 is not a valid Unicode character");
    diag("{\"a\":\"\\uDBFF\\uDFFF\"}",
         "JSON parse error, \\uDBFF\\uDFFF is not a valid Unicode character");
    diag("{\"a\":\"\\uFFFE\"}", "JSON parse error, \\uFFFE is not a valid Unicode character");
    diag("{\"a\":\"\\u12\"}", "JSON parse error, \\u12\" is not a valid Unicode character");
    diag("{\"a\":\"\\u\"}", "JSON parse error, \\u\" is not a valid Unicode character");

    /* limits */
    s = repeat("[", 1024, "");
    diag(s, "JSON parse error, premature EOI");
    free(s);
    s = repeat("[", 1025, "");
    diag(s, "JSON nesting depth limit exceeded");
    free(s);
    s = repeat("{\"a\":", 1025, "");
    diag(s, "JSON nesting depth limit exceeded");
    free(s);
    {   /* parser messages are cut to 1023 characters after the prefix */
        char *kw = repeat("x", 1100, "}");
        char *text = malloc(strlen(kw) + 6);
        char *want = repeat("x", 1023 - (int)strlen("invalid keyword '"), "");
        char *full = malloc(strlen(want) + 64);
        strcpy(text, "{\"a\":");
        strcat(text, kw);
        strcpy(full, "JSON parse error, invalid keyword '");
        strcat(full, want);
        diag(text, full);
        free(kw);
        free(text);
        free(want);
        free(full);
    }

    /* strict JSON for jansson */
    norm("{\"a\": [1, true]}", "{\"a\": [1, true]}");
    norm("{'driver':'raw'}", "{\"driver\":\"raw\"}");
    norm("{'a\"b':'c\\'d', \"e\\'f\":\"\\n\"}", "{\"a\\\"b\":\"c'd\", \"e'f\":\"\\n\"}");
    /* U+0000 (escaped or C0 80) travels as U+FDD0 and comes back as C0 80 */
    norm("{\"a\\u0000\":'b\xC0\x80',\"c\\\\u0000\":1}",
         "{\"a\\ufdd0\":\"b\\ufdd0\",\"c\\\\u0000\":1}");
    s = json_diag_unmask("a\xEF\xB7\x90" "b\xEF\xB7\x90");
    is_str(s, "a\xC0\x80" "b\xC0\x80", "unmask the U+0000 stand-in");
    free(s);
    return done_testing();
}

/* Size parsing and printing against qemu-img 7.2's observed behaviour.
 * Every expectation below was checked with the real qemu-img 7.2.22, e.g.
 *   qemu-img create -f raw y.raw 1.5      -> "Invalid image size specified"
 *   qemu-img create -f raw y.raw 1.0      -> size=1
 *   qemu-img info h.raw                   -> "virtual size: 1.27 MiB (1331200 bytes)" */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "util/size.h"

static void parse_ok(const char *s, uint64_t want)
{
    uint64_t v = 0xdeadbeef;
    int r = size_parse(s, 'B', &v);
    if (is_int(r, 0, "size_parse(\"%s\") succeeds", s))
        is_uint(v, want, "size_parse(\"%s\") = %ju", s, (uintmax_t)want);
}

static void parse_fail(const char *s, int want_err)
{
    uint64_t v = 12345;
    int r = size_parse(s, 'B', &v);
    is_int(r, want_err, "size_parse(\"%s\") fails with %s", s, want_err == -EINVAL ? "EINVAL" : "ERANGE");
    is_uint(v, 12345, "size_parse(\"%s\") leaves output untouched", s);
}

static void human(uint64_t v, const char *want)
{
    char buf[32];
    size_to_human(v, buf, sizeof(buf));
    is_str(buf, want, "size_to_human(%ju)", (uintmax_t)v);
}

int main(void)
{
    /* plain and suffixed decimal */
    parse_ok("0", 0);
    parse_ok("512", 512);
    parse_ok("1k", 1024);
    parse_ok("1K", 1024);
    parse_ok("64M", 64ULL << 20);
    parse_ok("1g", 1ULL << 30);
    parse_ok("2T", 2ULL << 40);
    parse_ok("1P", 1ULL << 50);
    parse_ok("1E", 1ULL << 60);
    parse_ok("15E", 15ULL << 60);
    parse_ok("512b", 512);
    parse_ok("512B", 512);
    parse_ok(" 1k", 1024);          /* strtoull skips blanks */
    parse_ok("+1k", 1024);
    /* fractions */
    parse_ok("1.5G", 3ULL << 29);
    parse_ok("1.5k", 1536);
    parse_ok("1.k", 1024);          /* "1." with no digits still takes a suffix */
    parse_ok("1.", 1);
    parse_ok("1.0", 1);             /* zero fraction needs no scale */
    parse_ok("1.0b", 1);
    parse_ok("0.5k", 512);
    parse_ok("1.0000000000000000000000000000001k", 1024);
    parse_ok("1.99999999999999999999k", 1024);  /* qemu on x86-64: fraction 1.0 -> 0 */
    parse_ok("1.1k", 1126);         /* 1126.4 rounds down */
    parse_ok("1.0005k", 1025);      /* 1024.512 rounds half up */
    /* values from real "Formatting ... size=N" lines */
    parse_ok("1.99999E", 2305831479998647936ULL);
    parse_ok("7.99999E", 9223360507639729792ULL);
    parse_ok("1.7T", 1869169767219ULL);
    parse_ok("3.14159P", 3537115888337719ULL);
    parse_ok("15.99999E", 18446732544494505600ULL);   /* same arithmetic */
    /* an underflowing fraction makes qemu skip one character after it */
    {
        char buf[420];
        memset(buf, '0', sizeof(buf));
        memcpy(buf, "1.", 2);
        memcpy(buf + 402, "1kk", 4);
        parse_ok(buf, 1024);
        memcpy(buf + 402, "1k", 3);
        parse_ok(buf, 1);
    }
    /* hex */
    parse_ok("0x10", 16);
    parse_ok("0X1f", 31);
    parse_ok("0x10k", 16384);       /* deprecated, but accepted */
    parse_ok("0", 0);

    parse_fail("", -EINVAL);
    parse_fail("k", -EINVAL);
    parse_fail("1.5", -EINVAL);     /* fraction of a byte */
    parse_fail("1.5b", -EINVAL);
    parse_fail("0.5", -EINVAL);
    parse_fail(".5k", -EINVAL);
    parse_fail("1e3", -EINVAL);
    parse_fail("1.5e3k", -EINVAL);
    parse_fail("-1", -EINVAL);
    parse_fail("-0", -EINVAL);
    parse_fail("-1k", -EINVAL);
    parse_fail("0x", -EINVAL);
    parse_fail("0x1.8", -EINVAL);
    parse_fail("1kk", -EINVAL);
    parse_fail("1 k", -EINVAL);
    parse_fail("1x", -EINVAL);
    parse_fail("99999999999999999999x", -EINVAL);
    parse_fail("99999999999999999999", -ERANGE);
    parse_fail("16E", -ERANGE);
    parse_fail("16.0E", -ERANGE);
    parse_fail("18446744073709551616", -ERANGE);
    parse_fail("17179869184G", -ERANGE);

    /* default suffix and full interface */
    {
        uint64_t v = 0;
        bool hex = true;
        const char *end = NULL;
        is_int(size_parse("2", 'M', &v), 0, "size_parse default suffix M");
        is_uint(v, 2ULL << 20, "\"2\" with default M is 2 MiB");
        is_int(size_parse("2k", 'M', &v), 0, "explicit suffix beats default");
        is_uint(v, 2048, "\"2k\" with default M is 2 KiB");
        is_int(size_parse("1.5", 'M', &v), 0, "fraction with default M is fine");
        is_uint(v, 3ULL << 19, "\"1.5\" with default M");
        is_int(size_parse_full("0x10k", NULL, 'B', 1024, &v, &hex), 0, "hex with suffix parses");
        ok(hex, "hex with suffix is flagged for the deprecation warning");
        is_int(size_parse_full("0x10", NULL, 'B', 1024, &v, &hex), 0, "hex without suffix");
        ok(!hex, "hex without suffix is not flagged");
        is_int(size_parse_full("1k", NULL, 'B', 1000, &v, NULL), 0, "metric unit");
        is_uint(v, 1000, "metric 1k = 1000");
        is_int(size_parse_full("10Mfoo", &end, 'B', 1024, &v, NULL), 0, "end pointer stops early");
        is_str(end, "foo", "end points past the suffix");
        is_int(size_parse_full("-5", &end, 'B', 1024, &v, NULL), -EINVAL, "negative with end");
        is_str(end, "-5", "end is the start on -EINVAL");
    }

    /* parse_u64 */
    {
        uint64_t v = 7;
        is_int(parse_u64("123", 10, &v), 0, "parse_u64 decimal");
        is_uint(v, 123, "parse_u64 123");
        is_int(parse_u64("0x1F", 0, &v), 0, "parse_u64 base 0 hex");
        is_uint(v, 31, "parse_u64 0x1F");
        is_int(parse_u64("010", 0, &v), 0, "parse_u64 base 0 octal");
        is_uint(v, 8, "parse_u64 010 is octal");
        is_int(parse_u64("18446744073709551615", 10, &v), 0, "parse_u64 max");
        is_uint(v, UINT64_MAX, "parse_u64 UINT64_MAX");
        v = 7;
        is_int(parse_u64("18446744073709551616", 10, &v), -ERANGE, "parse_u64 overflow");
        is_int(parse_u64("12a", 10, &v), -EINVAL, "parse_u64 trailing garbage");
        is_int(parse_u64("", 10, &v), -EINVAL, "parse_u64 empty");
        is_int(parse_u64("-1", 10, &v), -EINVAL, "parse_u64 negative");
        is_int(parse_u64("99999999999999999999z", 10, &v), -EINVAL, "garbage beats overflow");
        is_uint(v, 7, "parse_u64 failures leave output untouched");
        is_int(parse_u64_wrapping("-1", 0, &v), 0, "qemu_strtou64 accepts -1");
        is_uint(v, UINT64_MAX, "-1 wraps to UINT64_MAX");
        is_int(parse_u64_wrapping(" 8", 0, &v), 0, "qemu_strtou64 accepts leading blank");
        is_uint(v, 8, "\" 8\" = 8");
    }

    /* size_to_human: real "virtual size:" lines of qemu-img info */
    human(0, "0 B");
    human(512, "512 B");
    human(1024, "1 KiB");
    human(1536, "1.5 KiB");
    human(4096, "4 KiB");
    human(1331200, "1.27 MiB");
    human(1023488, "1e+03 KiB");
    human(1024000, "0.977 MiB");
    human(1048576, "1 MiB");
    human(1572864, "1.5 MiB");
    human(1000000000, "954 MiB");
    human(1ULL << 30, "1 GiB");
    human(1ULL << 40, "1 TiB");
    human(1ULL << 50, "1 PiB");
    human(1ULL << 60, "1 EiB");
    /* derived from the same formula */
    human(1000, "0.977 KiB");
    human(999, "999 B");
    human(UINT64_MAX, "16 EiB");
    human(INT64_MAX, "8 EiB");

    return done_testing();
}

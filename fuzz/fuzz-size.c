/* Fuzz target for size strings (util/size.c): qemu_strtosz and friends as
 * `create SIZE`, `-o size=`, `--size` and cvtnum parse them. The input is
 * one NUL-terminated string; every parser and both units run on it, and
 * what parses is printed back with size_to_human. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "util/size.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static const char suffixes[] = { 'B', 'K', 'M', 'G', 'T' };
    char *s, human[64];
    const char *end;
    uint64_t v;
    bool hex;

    if (size > 4096)
        return 0;
    s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    for (size_t i = 0; i < sizeof(suffixes); i++) {
        if (size_parse(s, suffixes[i], &v) == 0)
            size_to_human(v, human, sizeof(human));
    }
    if (size_parse_full(s, &end, 'B', 1024, &v, &hex) == 0 && (end < s || end > s + size))
        abort();    /* end must point into the string */
    size_parse_full(s, NULL, 'B', 1000, &v, &hex);
    size_parse_full(s, &end, 'M', 1000, &v, NULL);
    for (int base = 0; base <= 16; base += 8) {
        parse_u64(s, base, &v);
        parse_u64_wrapping(s, base, &v);
    }
    if (size >= 8) {
        uint64_t x;
        memcpy(&x, data, sizeof(x));
        size_to_human(x, human, sizeof(human));
    }
    free(s);
    return 0;
}

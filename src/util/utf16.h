/* UTF-16 text found in image headers (VHD parent names and locators, VHDX
 * metadata), decoded to UTF-8. */
#ifndef QIMG_UTIL_UTF16_H
#define QIMG_UTIL_UTF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode nbytes of UTF-16 (big or little endian) up to the first NUL
 * character. Returns a malloc'ed NUL-terminated UTF-8 string, or NULL on
 * an invalid sequence (unpaired surrogate) or allocation failure. */
char *utf16_to_utf8(const uint8_t *p, size_t nbytes, bool big_endian);

#endif

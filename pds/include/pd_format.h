/* A small printf for the C PDs on libmicrokit alone (no libc): %s, %c, %d, %u, %x, each
 * with an optional zero-padded width and an l (64-bit) modifier, and %%. What it does
 * not know it prints as `?`, so a wrong format shows on the console, never reads past
 * its arguments. Lines longer than its buffer are cut. */
#pragma once
#include <stdarg.h>
#include <stdint.h>

#include <microkit.h>

static inline void pd_vprintf(const char *fmt, va_list va)
{
    char out[256];
    unsigned n = 0;
#define PD_PUT(c)                                                                                                      \
    do {                                                                                                               \
        if (n < sizeof out - 1) {                                                                                      \
            out[n++] = (c);                                                                                            \
        }                                                                                                              \
    } while (0)
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            PD_PUT(*f);
            continue;
        }
        f++;
        unsigned width = 0;
        int zero = *f == '0';
        while (*f >= '0' && *f <= '9') {
            width = width * 10 + (unsigned)(*f++ - '0');
        }
        int is_long = 0;
        while (*f == 'l') {
            is_long = 1;
            f++;
        }
        if (*f == '%') {
            PD_PUT('%');
        } else if (*f == 's') {
            for (const char *s = va_arg(va, const char *); s && *s; s++) {
                PD_PUT(*s);
            }
        } else if (*f == 'c') {
            PD_PUT((char)va_arg(va, int));
        } else if (*f == 'd' || *f == 'u' || *f == 'x') {
            unsigned base = *f == 'x' ? 16 : 10;
            uint64_t v;
            int negative = 0;
            if (*f == 'd') {
                int64_t s = is_long ? va_arg(va, long) : va_arg(va, int);
                negative = s < 0;
                v = negative ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
            } else {
                v = is_long ? va_arg(va, unsigned long) : va_arg(va, unsigned);
            }
            char digits[20];
            unsigned k = 0;
            do {
                digits[k++] = "0123456789abcdef"[v % base];
                v /= base;
            } while (v);
            if (negative) {
                PD_PUT('-');
            }
            for (unsigned pad = k; pad < width; pad++) {
                PD_PUT(zero ? '0' : ' ');
            }
            while (k) {
                PD_PUT(digits[--k]);
            }
        } else {
            PD_PUT('?');
            if (!*f) {
                break;
            }
        }
    }
#undef PD_PUT
    out[n] = 0;
    microkit_dbg_puts(out);
}

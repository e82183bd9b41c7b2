/* SPDX-License-Identifier: MIT */
/* A growable byte buffer with a hard cap (curl dynbuf's "toobig"): every append either
 * fits under the cap or fails with EDGE_ETOOBIG, leaving the content unchanged. */
#ifndef EDGE_CORE_BUF_H
#define EDGE_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct edge_iov {
    uint8_t *base;
    size_t len;
};

struct edge_buf {
    char *data; /* NUL-terminated when non-NULL */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* hard limit on len */
};

/* Initialise an empty buffer that may grow to max bytes. No allocation. */
void edge_buf_init(struct edge_buf *b, size_t max);
/* Release the storage; the buffer is empty and reusable afterwards. */
void edge_buf_free(struct edge_buf *b);
/* Forget the content but keep the storage. */
void edge_buf_reset(struct edge_buf *b);
/* Ensure room for n more bytes. EDGE_OK, EDGE_ENOMEM or EDGE_ETOOBIG. */
int edge_buf_reserve(struct edge_buf *b, size_t n);
int edge_buf_append(struct edge_buf *b, const void *p, size_t n);
int edge_buf_puts(struct edge_buf *b, const char *s);
int edge_buf_putc(struct edge_buf *b, char c);
/* v in decimal (what "%" PRId64 prints), without printf's machinery (a vsnprintf was about
 * 2,500 instructions of an answer's number). */
int edge_buf_i64(struct edge_buf *b, int64_t v);
/* v in decimal, NUL-terminated, at the end of buf: returns its first digit. */
#define EDGE_DEC_MAX 24
const char *edge_dec_u64(char buf[EDGE_DEC_MAX], uint64_t v);
int edge_buf_printf(struct edge_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int edge_buf_vprintf(struct edge_buf *b, const char *fmt, va_list ap);
/* Take the storage (caller frees with edge_free); the buffer becomes empty. */
char *edge_buf_steal(struct edge_buf *b, size_t *out_len);

/* ---- JSON writing helpers (append-only; callers place commas themselves) ---- */
/* A JSON string literal with escaping; invalid UTF-8 bytes become U+FFFD. */
int edge_buf_json_str(struct edge_buf *b, const char *s, size_t len);
int edge_buf_json_cstr(struct edge_buf *b, const char *s);
/* A finite double in shortest round-trip form; NaN/Inf are written as null. */
int edge_buf_json_double(struct edge_buf *b, double d);

/* ---- base64 (RFC 4648) ---- */
/* Standard alphabet with padding. */
int edge_buf_base64(struct edge_buf *b, const uint8_t *p, size_t n);
/* URL alphabet without padding. */
int edge_buf_base64url(struct edge_buf *b, const uint8_t *p, size_t n);
/* Decode standard or URL alphabet, padding optional, no whitespace. Returns EDGE_OK,
 * EDGE_EINVAL on bad input, EDGE_ENOMEM. *out is caller-freed with edge_free. */
int edge_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len);

#endif

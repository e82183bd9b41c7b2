/* SPDX-License-Identifier: MIT */
#include "core/buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "edgelite/errors.h"

void edge_buf_init(struct edge_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void edge_buf_free(struct edge_buf *b)
{
    edge_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void edge_buf_reset(struct edge_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

int edge_buf_reserve(struct edge_buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n) {
        return EDGE_ETOOBIG;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) {
        return EDGE_OK;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    char *p = edge_realloc(b->data, cap);
    if (p == NULL) {
        return EDGE_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return EDGE_OK;
}

int edge_buf_append(struct edge_buf *b, const void *p, size_t n)
{
    int rv = edge_buf_reserve(b, n);
    if (rv != EDGE_OK) {
        return rv;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return EDGE_OK;
}

int edge_buf_puts(struct edge_buf *b, const char *s)
{
    return edge_buf_append(b, s, strlen(s));
}

int edge_buf_putc(struct edge_buf *b, char c)
{
    return edge_buf_append(b, &c, 1);
}

int edge_buf_vprintf(struct edge_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    char small[256];
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return EDGE_EINVAL;
    }
    if ((size_t)n < sizeof(small)) {
        return edge_buf_append(b, small, (size_t)n);
    }
    int rv = edge_buf_reserve(b, (size_t)n);
    if (rv != EDGE_OK) {
        return rv;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return EDGE_OK;
}

int edge_buf_printf(struct edge_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = edge_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rv;
}

char *edge_buf_steal(struct edge_buf *b, size_t *out_len)
{
    char *p = b->data;
    if (out_len != NULL) {
        *out_len = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid (RFC 3629 ranges). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] > 0x9F) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] > 0x8F) return 0;
        return 4;
    }
    return 0;
}

int edge_buf_json_str(struct edge_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    /* Worst case 6 bytes per input byte; reserve once, then write directly. */
    if (len > ((size_t)-1 - 2) / 6) {
        return EDGE_ETOOBIG;
    }
    int rv = edge_buf_reserve(b, len * 6 + 2);
    if (rv != EDGE_OK) {
        /* Retry with the exact size when the cap is near: compute it first. */
        size_t need = 2;
        for (size_t i = 0; i < len; i++) {
            need += (p[i] < 0x20 || p[i] == '"' || p[i] == '\\') ? 6 : (p[i] >= 0x80 ? 3 : 1);
        }
        rv = edge_buf_reserve(b, need);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            *o++ = (char)c;
            i++;
        } else if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u'; *o++ = '0'; *o++ = '0';
                *o++ = hex[c >> 4]; *o++ = hex[c & 15];
            }
            i++;
        } else {
            size_t k = utf8_seq(p + i, len - i);
            if (k == 0) {
                /* U+FFFD replacement character */
                *o++ = (char)0xEF; *o++ = (char)0xBF; *o++ = (char)0xBD;
                i++;
            } else {
                memcpy(o, p + i, k);
                o += k;
                i += k;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return EDGE_OK;
}

int edge_buf_json_cstr(struct edge_buf *b, const char *s)
{
    if (s == NULL) {
        return edge_buf_append(b, "null", 4);
    }
    return edge_buf_json_str(b, s, strlen(s));
}

int edge_buf_json_double(struct edge_buf *b, double d)
{
    if (!isfinite(d)) {
        return edge_buf_append(b, "null", 4);
    }
    char tmp[40];
    /* %.17g round-trips; try shorter first so 1.5 stays "1.5". */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    /* Keep it a JSON number: "1e+20" is valid JSON, "inf" cannot happen here. */
    return edge_buf_puts(b, tmp);
}

static int b64_encode(struct edge_buf *b, const uint8_t *p, size_t n, const char *alpha, int pad)
{
    size_t out = ((n + 2) / 3) * 4;
    int rv = edge_buf_reserve(b, out);
    if (rv != EDGE_OK) {
        return rv;
    }
    char *o = b->data + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        *o++ = alpha[(v >> 18) & 63];
        *o++ = alpha[(v >> 12) & 63];
        *o++ = alpha[(v >> 6) & 63];
        *o++ = alpha[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        *o++ = alpha[(v >> 18) & 63];
        *o++ = alpha[(v >> 12) & 63];
        if (i + 1 < n) {
            *o++ = alpha[(v >> 6) & 63];
        } else if (pad) {
            *o++ = '=';
        }
        if (pad) {
            *o++ = '=';
        }
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return EDGE_OK;
}

int edge_buf_base64(struct edge_buf *b, const uint8_t *p, size_t n)
{
    return b64_encode(b, p, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 1);
}

int edge_buf_base64url(struct edge_buf *b, const uint8_t *p, size_t n)
{
    return b64_encode(b, p, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 0);
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int edge_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    while (len > 0 && s[len - 1] == '=') {
        len--;
    }
    if (len % 4 == 1) {
        return EDGE_EINVAL;
    }
    uint8_t *d = edge_malloc(len / 4 * 3 + 3);
    if (d == NULL) {
        return EDGE_ENOMEM;
    }
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) {
            edge_free(d);
            return EDGE_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Non-zero leftover bits mean a non-canonical encoding; reject it. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        edge_free(d);
        return EDGE_EINVAL;
    }
    *out = d;
    *out_len = o;
    return EDGE_OK;
}

const char *edge_dec_u64(char buf[EDGE_DEC_MAX], uint64_t v)
{
    char *q = buf + EDGE_DEC_MAX;
    *--q = '\0';
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return q;
}

int edge_buf_i64(struct edge_buf *b, int64_t v)
{
    char tmp[EDGE_DEC_MAX];
    const char *q = edge_dec_u64(tmp, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
    if (v < 0) edge_buf_putc(b, '-');
    return edge_buf_puts(b, q);
}

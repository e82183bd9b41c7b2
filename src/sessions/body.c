/* SPDX-License-Identifier: MIT */
/* The body of a session PUT or POST, read in one pass (sessions.h, edge_sess_body_scan).
 * Building a jansson tree of the body and dumping `data` again took about a fifth of a
 * node's CPU per PUT (a malloc per value, a hash table per object); this checks the same
 * grammar jansson's json_loadb(flags 0) accepts and copies `data` out without the
 * whitespace between tokens. Strings and numbers are copied as sent (escapes included),
 * which is the same JSON value. */
#include "sessions/sessions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* jansson's own limit, so a body it accepted is still accepted. */
#define BODY_MAX_DEPTH 2048

struct scan {
    const unsigned char *base, *p, *end;
    struct edge_buf *out; /* NULL: validate only */
    /* Bytes emitted but not yet appended to out: a run of the body that is copied whole.
     * A compact body is one run, so data costs one append instead of one per token. */
    const unsigned char *run, *run_end;
    char *err;
    size_t err_len;
    int rv;
};

static bool fail(struct scan *s, const char *what)
{
    if (s->rv == EDGE_OK) {
        s->rv = EDGE_EINVAL;
        snprintf(s->err, s->err_len, "%s at byte %zu", what, (size_t)(s->p - s->base));
    }
    return false;
}

static bool failat(struct scan *s, const unsigned char *start, const char *what)
{
    if (s->rv == EDGE_OK) {
        s->rv = EDGE_EINVAL;
        snprintf(s->err, s->err_len, "%s at byte %zu", what, (size_t)(start - s->base));
    }
    return false;
}

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static bool flush(struct scan *s)
{
    if (s->out == NULL || s->run == s->run_end) return true;
    int rc = edge_buf_append(s->out, s->run, (size_t)(s->run_end - s->run));
    s->run = s->run_end = NULL;
    if (rc != EDGE_OK) {
        s->rv = rc;
        snprintf(s->err, s->err_len, "%s", rc == EDGE_ETOOBIG ? "too large" : "out of memory");
        return false;
    }
    return true;
}

/* from..from+n lies inside the body (emitted text is always the body's own bytes). */
static bool emit(struct scan *s, const unsigned char *from, size_t n)
{
    if (s->out == NULL) return true;
    if (s->run_end == from && s->run != NULL) {
        s->run_end += n;
        return true;
    }
    if (!flush(s)) return false;
    s->run = from;
    s->run_end = from + n;
    return true;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool hex4(struct scan *s, unsigned *out)
{
    if (s->end - s->p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s->p[i]);
        if (h < 0) return false;
        v = v << 4 | (unsigned)h;
    }
    s->p += 4;
    *out = v;
    return true;
}

/* One UTF-8 sequence at s->p (its first byte >= 0x80), as jansson checks it: shortest
 * form, no surrogates, at most U+10FFFF. */
static bool utf8(struct scan *s)
{
    const unsigned char *p = s->p;
    unsigned c = p[0], cp;
    int n;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3, cp = c & 0x07;
    } else {
        return false;
    }
    if (s->end - p <= n) return false;
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80) return false;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return false;
    }
    s->p += n + 1;
    return true;
}

/* 1 for a byte that stands for itself in a JSON string: 0x20..0x7f but '"' and '\\'. */
static const unsigned char str_plain[256] = {[0x20 ... 0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1};

/* A string at s->p (on its opening quote); raw, raw_len: its bytes between the quotes
 * (escapes not decoded: only compared against plain ASCII names). */
static bool string(struct scan *s, const unsigned char **raw, size_t *raw_len)
{
    const unsigned char *start = s->p++;
    while (s->p < s->end) {
        /* The bytes that need no check (printable ASCII but the quote and the backslash)
         * are most of a string: skip them in a loop of its own, on locals, by table; the
         * byte-by-byte loop below was about a tenth of a node's instructions per PUT. */
        const unsigned char *q = s->p, *e = s->end;
        while (q < e && str_plain[*q]) q++;
        s->p = q;
        if (q == e) break;
        unsigned char c = *q;
        if (c == '"') {
            s->p++;
            if (raw != NULL) {
                *raw = start + 1;
                *raw_len = (size_t)(s->p - start - 2);
            }
            return emit(s, start, (size_t)(s->p - start));
        }
        if (c < 0x20) return failat(s, start, "control character in a string");
        if (c == '\\') {
            s->p++;
            if (s->p >= s->end) break;
            c = *s->p++;
            if (c == 'u') {
                unsigned u;
                if (!hex4(s, &u)) return failat(s, start, "invalid \\u escape in a string");
                if (u == 0) return failat(s, start, "\\u0000 is not allowed in a string");
                if (u >= 0xdc00 && u <= 0xdfff) return failat(s, start, "invalid Unicode (lone low surrogate)");
                if (u >= 0xd800 && u <= 0xdbff) {
                    unsigned lo;
                    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u') {
                        return failat(s, start, "invalid Unicode (lone high surrogate)");
                    }
                    s->p += 2;
                    if (!hex4(s, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                        return failat(s, start, "invalid Unicode (bad surrogate pair)");
                    }
                }
            } else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
                return failat(s, start, "invalid escape in a string");
            }
        } else if (c >= 0x80) {
            if (!utf8(s)) return failat(s, start, "invalid UTF-8 in a string");
        } else {
            s->p++;
        }
    }
    return failat(s, start, "unterminated string");
}

/* A number: the JSON grammar; integers must fit int64 and reals a double (jansson
 * refuses both overflows). *is_int and *ival describe it for ttl_s. */
static bool number(struct scan *s, bool *is_int, long long *ival)
{
    const unsigned char *start = s->p;
    bool integer = true;
    if (s->p < s->end && *s->p == '-') s->p++;
    if (s->p >= s->end) return failat(s, start, "invalid number");
    if (*s->p == '0') {
        s->p++;
    } else if (*s->p >= '1' && *s->p <= '9') {
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    } else {
        return failat(s, start, "invalid number");
    }
    if (s->p < s->end && *s->p == '.') {
        integer = false;
        s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9') return failat(s, start, "invalid number");
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        integer = false;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9') return failat(s, start, "invalid number");
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    }
    size_t n = (size_t)(s->p - start);
    size_t digits = n - (*start == '-');
    if (integer && digits <= 18) {
        /* at most 18 digits always fit an int64: no strtoll (with its copy) needed */
        if (ival != NULL) {
            long long v = 0;
            for (const unsigned char *d = start + (*start == '-'); d < s->p; d++) v = v * 10 + (*d - '0');
            *ival = *start == '-' ? -v : v;
        }
        if (is_int != NULL) *is_int = true;
        return emit(s, start, n);
    }
    char tmp[64], *txt = tmp;
    if (n >= sizeof(tmp)) {
        /* an integer this long cannot fit; a real is converted to see whether it overflows */
        if (integer) return failat(s, start, "too big integer");
        txt = edge_malloc(n + 1);
        if (txt == NULL) return failat(s, start, "out of memory");
    }
    memcpy(txt, start, n);
    txt[n] = '\0';
    errno = 0;
    bool overflow = false;
    if (integer) {
        long long v = strtoll(txt, NULL, 10);
        overflow = errno == ERANGE;
        if (ival != NULL) *ival = v;
    } else {
        /* HUGE_VAL is refused, like jansson; an underflow towards 0 is not */
        double d = strtod(txt, NULL);
        overflow = errno == ERANGE && (d > 1.0 || d < -1.0);
    }
    if (txt != tmp) edge_free(txt);
    if (overflow) return failat(s, start, integer ? "too big integer" : "real number overflow");
    if (is_int != NULL) *is_int = integer;
    return emit(s, start, n);
}

static bool literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return fail(s, "invalid token");
    const unsigned char *start = s->p;
    s->p += n;
    return emit(s, start, n);
}

static bool value(struct scan *s, int depth);

static bool container(struct scan *s, int depth)
{
    unsigned char open = *s->p, close = open == '{' ? '}' : ']';
    if (depth >= BODY_MAX_DEPTH) return fail(s, "maximum parsing depth reached");
    if (!emit(s, s->p, 1)) return false;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return emit(s, s->p - 1, 1);
    }
    for (;;) {
        if (open == '{') {
            if (s->p >= s->end || *s->p != '"') return fail(s, "string or '}' expected");
            if (!string(s, NULL, NULL)) return false;
            ws(s);
            if (s->p >= s->end || *s->p != ':') return fail(s, "':' expected");
            if (!emit(s, s->p, 1)) return false;
            s->p++;
            ws(s);
        }
        if (!value(s, depth + 1)) return false;
        ws(s);
        if (s->p >= s->end) return fail(s, open == '{' ? "'}' expected" : "']' expected");
        if (*s->p == close) {
            s->p++;
            return emit(s, s->p - 1, 1);
        }
        if (*s->p != ',') return fail(s, open == '{' ? "',' or '}' expected" : "',' or ']' expected");
        if (!emit(s, s->p, 1)) return false;
        s->p++;
        ws(s);
    }
}

static bool value(struct scan *s, int depth)
{
    if (s->p >= s->end) return fail(s, "unexpected end of input");
    switch (*s->p) {
    case '{':
    case '[': return container(s, depth);
    case '"': return string(s, NULL, NULL);
    case 't': return literal(s, "true");
    case 'f': return literal(s, "false");
    case 'n': return literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) return number(s, NULL, NULL);
        return fail(s, "invalid token");
    }
}

int edge_sess_body_scan(const void *body, size_t len, struct edge_buf *data, struct edge_sess_body *out, char *err,
                        size_t err_len)
{
    struct scan s = {.base = body, .p = body, .end = (const unsigned char *)body + len, .err = err, .err_len = err_len, .rv = EDGE_OK};
    memset(out, 0, sizeof(*out));
    out->ttl = EDGE_SESS_TTL_ABSENT;
    edge_buf_reset(data);
    if (err_len > 0) err[0] = '\0';
    ws(&s);
    if (s.p >= s.end || (*s.p != '{' && *s.p != '[')) {
        fail(&s, "'[' or '{' expected");
        return s.rv;
    }
    if (*s.p == '[') {
        /* valid JSON or not, it is not an object */
        if (!value(&s, 0)) return s.rv;
        ws(&s);
        if (s.p != s.end) {
            fail(&s, "end of file expected");
            return s.rv;
        }
        return EDGE_OK;
    }
    out->is_object = true;
    s.p++;
    ws(&s);
    bool first = true;
    while (s.p < s.end && *s.p != '}') {
        if (!first) {
            if (*s.p != ',') {
                fail(&s, "',' or '}' expected");
                return s.rv;
            }
            s.p++;
            ws(&s);
        }
        first = false;
        const unsigned char *key;
        size_t key_len;
        if (s.p >= s.end || *s.p != '"') {
            fail(&s, "string or '}' expected");
            return s.rv;
        }
        if (!string(&s, &key, &key_len)) return s.rv;
        ws(&s);
        if (s.p >= s.end || *s.p != ':') {
            fail(&s, "':' expected");
            return s.rv;
        }
        s.p++;
        ws(&s);
        if (s.p >= s.end) break;
        /* Members are named by their raw text: "data" written with escapes is another
         * member to this scan, as to nobody who sends JSON (a later member of the same
         * name wins, as in jansson). */
        bool is_data = key_len == 4 && memcmp(key, "data", 4) == 0;
        bool is_ttl = key_len == 5 && memcmp(key, "ttl_s", 5) == 0;
        if (is_data) {
            edge_buf_reset(data);
            s.out = data;
            out->data_is_object = *s.p == '{';
            out->has_data = true;
            if (!value(&s, 1) || !flush(&s)) return s.rv;
            s.out = NULL;
        } else if (is_ttl) {
            unsigned char c = *s.p;
            if (c == '-' || (c >= '0' && c <= '9')) {
                bool is_int = false;
                long long v = 0;
                if (!number(&s, &is_int, &v)) return s.rv;
                out->ttl = is_int ? EDGE_SESS_TTL_INT : EDGE_SESS_TTL_OTHER;
                out->ttl_s = v;
            } else {
                bool is_null = c == 'n';
                if (!value(&s, 1)) return s.rv;
                out->ttl = is_null ? EDGE_SESS_TTL_NULL : EDGE_SESS_TTL_OTHER;
            }
        } else if (!value(&s, 1)) {
            return s.rv;
        }
        ws(&s);
    }
    if (s.p >= s.end) {
        fail(&s, "'}' expected");
        return s.rv;
    }
    s.p++;
    ws(&s);
    if (s.p != s.end) {
        fail(&s, "end of file expected");
        return s.rv;
    }
    if (out->has_data && data->data == NULL && edge_buf_append(data, "", 0) != EDGE_OK) return EDGE_ENOMEM;
    return EDGE_OK;
}

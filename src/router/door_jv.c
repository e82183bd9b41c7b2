/* SPDX-License-Identifier: MIT */
/* The client's Hrana WebSocket messages read in place (door_ws.c, door_ws_state.c): the door
 * relays every message and reads a few members of each (type, request_id, the request's
 * type and ids, the SQL text, bookmark, jwt). A DOM parse of each (jansson) was half of the
 * door's CPU per relayed execute: an allocation per value and a hash table per object, for
 * a message that is passed on as it came.
 *
 * DESIGN: two steps, so that the door's decisions stay jansson's.
 * - Whether a message is JSON at all (else the client is closed 1007) is still jansson's
 *   verdict, except for messages in a plain subset that edge__door_jv_plain recognizes in one
 *   pass without allocating: ASCII strings with no control character and only the two-char
 *   escapes, integers of at most 18 digits, reals without exponent of at most 64 chars,
 *   nesting below 64, an object at the top. Every such text is JSON that jansson accepts (no
 *   overflow, no encoding question, no depth limit); anything else (\u escapes, UTF-8,
 *   exponents, long numbers) goes through json_loadb as before.
 * - The members are then read on the text of a valid message with jansson's meaning: the
 *   last of duplicate keys wins (json_object_set replaces), keys and strings compare
 *   decoded (\u escapes, surrogate pairs), an integer is a number token without '.', 'e' or
 *   'E', and a member of something that is not an object is absent. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "router/door_int.h"

#define JV_PLAIN_DEPTH 64
#define JV_NOT_PLAIN ((size_t)-1)

static size_t ws(const char *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    return i;
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ---------------------------------------------------------------------------------- */
/* The plain subset                                                                   */
/* ---------------------------------------------------------------------------------- */

static size_t plain_string(const char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"') return i + 1;
        if (c < 0x20 || c >= 0x80) return JV_NOT_PLAIN; /* jansson rejects the first, checks the UTF-8 of the second */
        if (c == '\\') {
            if (++i >= len || strchr("\"\\/bfnrt", p[i]) == NULL || p[i] == '\0') return JV_NOT_PLAIN;
        }
    }
    return JV_NOT_PLAIN;
}

static size_t plain_number(const char *p, size_t len, size_t i)
{
    size_t s = i, digits = 0;
    if (i < len && p[i] == '-') i++;
    if (i < len && p[i] == '0') {
        i++;
        digits = 1;
    } else {
        while (i < len && digit(p[i])) i++, digits++;
    }
    if (digits == 0) return JV_NOT_PLAIN;
    bool real = false;
    if (i < len && p[i] == '.') {
        real = true;
        size_t f = ++i;
        while (i < len && digit(p[i])) i++;
        if (i == f) return JV_NOT_PLAIN;
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) return JV_NOT_PLAIN; /* strtod may overflow */
    if (i < len && digit(p[i])) return JV_NOT_PLAIN;                   /* "01": jansson's error */
    /* 18 digits never overflow int64 (strtoll's ERANGE is jansson's error), nor 64 chars a double */
    if (real ? i - s > 64 : digits > 18) return JV_NOT_PLAIN;
    return i;
}

static size_t plain_value(const char *p, size_t len, size_t i, int depth)
{
    if (i >= len) return JV_NOT_PLAIN;
    char c = p[i];
    if (c == '"') return plain_string(p, len, i);
    if (c == '-' || digit(c)) return plain_number(p, len, i);
    if (c == 't') return len - i >= 4 && memcmp(p + i, "true", 4) == 0 ? i + 4 : JV_NOT_PLAIN;
    if (c == 'f') return len - i >= 5 && memcmp(p + i, "false", 5) == 0 ? i + 5 : JV_NOT_PLAIN;
    if (c == 'n') return len - i >= 4 && memcmp(p + i, "null", 4) == 0 ? i + 4 : JV_NOT_PLAIN;
    if ((c != '{' && c != '[') || depth >= JV_PLAIN_DEPTH) return JV_NOT_PLAIN;
    char close = c == '{' ? '}' : ']';
    i = ws(p, len, i + 1);
    if (i < len && p[i] == close) return i + 1;
    for (;;) {
        if (c == '{') {
            if (i >= len || p[i] != '"') return JV_NOT_PLAIN;
            i = plain_string(p, len, i);
            if (i == JV_NOT_PLAIN) return i;
            i = ws(p, len, i);
            if (i >= len || p[i] != ':') return JV_NOT_PLAIN;
            i = ws(p, len, i + 1);
        }
        i = plain_value(p, len, i, depth + 1);
        if (i == JV_NOT_PLAIN) return i;
        i = ws(p, len, i);
        if (i < len && p[i] == close) return i + 1;
        if (i >= len || p[i] != ',') return JV_NOT_PLAIN;
        i = ws(p, len, i + 1);
    }
}

bool edge__door_jv_plain(const char *p, size_t len)
{
    size_t i = ws(p, len, 0);
    if (i >= len || p[i] != '{') return false;
    i = plain_value(p, len, i, 0);
    return i != JV_NOT_PLAIN && ws(p, len, i) == len;
}

/* ---------------------------------------------------------------------------------- */
/* Reading a valid message                                                            */
/* ---------------------------------------------------------------------------------- */

static size_t skip_string(const char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\') i++;
        else if (p[i] == '"') return i + 1;
    }
    return len;
}

/* Past the value at p[i] (valid JSON): strings stepped over whole, nesting counted. */
static size_t skip_value(const char *p, size_t len, size_t i)
{
    if (i >= len) return len;
    if (p[i] == '"') return skip_string(p, len, i);
    if (p[i] != '{' && p[i] != '[') {
        while (i < len && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ' && p[i] != '\t' &&
               p[i] != '\n' && p[i] != '\r') {
            i++;
        }
        return i;
    }
    size_t depth = 0;
    for (; i < len; i++) {
        if (p[i] == '"') {
            i = skip_string(p, len, i) - 1;
        } else if (p[i] == '{' || p[i] == '[') {
            depth++;
        } else if ((p[i] == '}' || p[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return len;
}

static int hex4(const char *p, size_t n)
{
    if (n < 4) return -1;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The decoded bytes of the string at v into out (room for v.len bytes; NULL: only counted). */
static size_t decode(struct edge_jv v, char *out)
{
    size_t n = 0;
    const char *p = v.p, *end = v.p + v.len - 1; /* the closing quote */
    for (p++; p < end; p++) {
        if (*p != '\\') {
            if (out) out[n] = *p;
            n++;
            continue;
        }
        if (++p >= end) break;
        char c = *p;
        if (c != 'u') {
            char d = c == 'b' ? '\b' : c == 'f' ? '\f' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
            if (out) out[n] = d;
            n++;
            continue;
        }
        int32_t u = hex4(p + 1, (size_t)(end - p - 1));
        if (u < 0) break;
        p += 4;
        if (u >= 0xD800 && u <= 0xDBFF && end - p > 6 && p[1] == '\\' && p[2] == 'u') {
            int lo = hex4(p + 3, (size_t)(end - p - 3));
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
        }
        /* UTF-8, as jansson writes it (at most 4 bytes for the 6 of an escape) */
        char b[4];
        size_t k;
        if (u < 0x80) {
            b[0] = (char)u;
            k = 1;
        } else if (u < 0x800) {
            b[0] = (char)(0xC0 | (u >> 6));
            b[1] = (char)(0x80 | (u & 0x3F));
            k = 2;
        } else if (u < 0x10000) {
            b[0] = (char)(0xE0 | (u >> 12));
            b[1] = (char)(0x80 | ((u >> 6) & 0x3F));
            b[2] = (char)(0x80 | (u & 0x3F));
            k = 3;
        } else {
            b[0] = (char)(0xF0 | (u >> 18));
            b[1] = (char)(0x80 | ((u >> 12) & 0x3F));
            b[2] = (char)(0x80 | ((u >> 6) & 0x3F));
            b[3] = (char)(0x80 | (u & 0x3F));
            k = 4;
        }
        if (out) memcpy(out + n, b, k);
        n += k;
    }
    return n;
}

bool edge__door_jv_is_object(struct edge_jv v)
{
    return v.p != NULL && v.len >= 2 && v.p[0] == '{';
}

bool edge__door_jv_is_string(struct edge_jv v)
{
    return v.p != NULL && v.len >= 2 && v.p[0] == '"';
}

bool edge__door_jv_is_null(struct edge_jv v)
{
    return v.p != NULL && v.len == 4 && memcmp(v.p, "null", 4) == 0;
}

bool edge__door_jv_is_integer(struct edge_jv v)
{
    if (v.p == NULL || v.len == 0 || !(v.p[0] == '-' || digit(v.p[0]))) return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] == '.' || v.p[i] == 'e' || v.p[i] == 'E') return false;
    }
    return true;
}

int64_t edge__door_jv_int(struct edge_jv v)
{
    if (!edge__door_jv_is_integer(v) || v.len >= 32) return 0;
    char num[32];
    memcpy(num, v.p, v.len);
    num[v.len] = '\0';
    return strtoll(num, NULL, 10);
}

size_t edge__door_jv_str(struct edge_jv v, char *out)
{
    if (!edge__door_jv_is_string(v)) return 0;
    if (memchr(v.p, '\\', v.len) == NULL) {
        if (out) memcpy(out, v.p + 1, v.len - 2);
        return v.len - 2;
    }
    return decode(v, out);
}

bool edge__door_jv_str_eq(struct edge_jv v, const char *s)
{
    size_t n = strlen(s);
    if (!edge__door_jv_is_string(v)) return false;
    if (memchr(v.p, '\\', v.len) == NULL) return v.len - 2 == n && memcmp(v.p + 1, s, n) == 0;
    /* an escaped string is at least as long as what it decodes to */
    if (v.len > 6 * n + 2) return false;
    char buf[6 * 64 + 2];
    if (v.len > sizeof(buf)) return false;
    return decode(v, buf) == n && memcmp(buf, s, n) == 0;
}

const char *edge__door_jv_text(struct edge_jv v, size_t *len, char **owned)
{
    *owned = NULL;
    *len = 0;
    if (!edge__door_jv_is_string(v)) return NULL;
    if (memchr(v.p, '\\', v.len) == NULL) {
        *len = v.len - 2;
        return v.p + 1;
    }
    *owned = edge_malloc(v.len);
    if (*owned == NULL) return NULL;
    *len = decode(v, *owned);
    (*owned)[*len] = '\0';
    return *owned;
}

#define JV_MAX_KEYS 8

void edge__door_jv_members(struct edge_jv obj, const char *const *keys, size_t n, struct edge_jv *out)
{
    size_t kl[JV_MAX_KEYS];
    for (size_t k = 0; k < n; k++) {
        out[k] = (struct edge_jv){NULL, 0};
        kl[k] = k < JV_MAX_KEYS ? strlen(keys[k]) : 0;
    }
    if (!edge__door_jv_is_object(obj) || n > JV_MAX_KEYS) return;
    const char *p = obj.p;
    size_t len = obj.len, i = ws(p, len, 1);
    while (i < len && p[i] == '"') {
        /* the key, and whether it has an escape (then it is compared decoded) */
        size_t ks = i + 1, ke = ks;
        bool esc = false;
        while (ke < len && p[ke] != '"') {
            if (p[ke] == '\\') {
                esc = true;
                ke++;
            }
            ke++;
        }
        if (ke >= len) return;
        struct edge_jv key = {p + i, ke + 1 - i};
        i = ws(p, len, ke + 1);
        if (i >= len || p[i] != ':') return;
        i = ws(p, len, i + 1);
        size_t ve = skip_value(p, len, i);
        for (size_t k = 0; k < n; k++) {
            bool same = esc ? edge__door_jv_str_eq(key, keys[k])
                            : ke - ks == kl[k] && memcmp(p + ks, keys[k], kl[k]) == 0;
            /* the last one wins, as in jansson's object */
            if (same) out[k] = (struct edge_jv){p + i, ve - i};
        }
        i = ws(p, len, ve);
        if (i < len && p[i] == ',') i = ws(p, len, i + 1);
    }
}

struct edge_jv edge__door_jv_get(struct edge_jv obj, const char *key)
{
    struct edge_jv found;
    edge__door_jv_members(obj, &key, 1, &found);
    return found;
}

struct edge_jv edge__door_jv_next(struct edge_jv arr, struct edge_jv prev)
{
    struct edge_jv none = {NULL, 0};
    if (arr.p == NULL || arr.len < 2 || arr.p[0] != '[') return none;
    const char *p = arr.p;
    size_t len = arr.len;
    size_t i = prev.p == NULL ? ws(p, len, 1) : ws(p, len, (size_t)(prev.p - p) + prev.len);
    if (prev.p != NULL) {
        if (i >= len || p[i] != ',') return none;
        i = ws(p, len, i + 1);
    }
    if (i >= len || p[i] == ']') return none;
    size_t ve = skip_value(p, len, i);
    return (struct edge_jv){p + i, ve - i};
}

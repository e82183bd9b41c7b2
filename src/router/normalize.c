/* SPDX-License-Identifier: MIT */
/* Normalized statements for the statistics: a small tokenizer that splits SQL the way
 * SQLite's own (tokenize.c) does, so a literal inside a quoted identifier or a comment is
 * never taken for one, and '--' inside a string is not a comment. Literals (strings,
 * numbers, blobs) and parameters (?, ?N, :a, @a, $a) become '?', comments go, bare words
 * are lower-cased (SQL keywords and identifiers are case-insensitive), quoted
 * identifiers stay as written, and tokens are joined with canonical spacing so that
 * "WHERE id=1" and "where  id = 2" are one statement. */
#include <string.h>

#include "router/router.h"

enum tok {
    T_END,
    T_SPACE,  /* whitespace and comments */
    T_WORD,   /* a bare identifier or keyword */
    T_QID,    /* "x", `x`, [x] */
    T_LIT,    /* a literal or a parameter: printed as ? */
    T_OPEN,   /* ( */
    T_CLOSE,  /* ) */
    T_COMMA,  /* , */
    T_DOT,    /* . */
    T_SEMI,   /* ; */
    T_OP,     /* any other operator */
};

static bool id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           c >= 0x80;
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool hexdigit(unsigned char c)
{
    return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A number from s[0] (a digit, or '.' followed by one), as SQLite reads it: hex, or
 * digits [. digits] [e [+-] digits], with '_' between digits (SQLite 3.46). */
static size_t number_len(const char *s, size_t n)
{
    size_t i = 0;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && n > 2 && hexdigit((unsigned char)s[2])) {
        for (i = 2; i < n && (hexdigit((unsigned char)s[i]) || s[i] == '_'); i++) {
        }
        return i;
    }
    while (i < n && (digit((unsigned char)s[i]) || s[i] == '_')) i++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && (digit((unsigned char)s[i]) || s[i] == '_')) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E') &&
        ((i + 1 < n && digit((unsigned char)s[i + 1])) ||
         (i + 2 < n && (s[i + 1] == '+' || s[i + 1] == '-') && digit((unsigned char)s[i + 2])))) {
        i += 2;
        while (i < n && digit((unsigned char)s[i])) i++;
    }
    /* "1abc" is one (illegal) token for SQLite: keep it one here too */
    while (i < n && id_char((unsigned char)s[i])) i++;
    return i;
}

/* The next token of s[0..n): its kind and length (at least 1 when n > 0). */
static enum tok next_token(const char *s, size_t n, size_t *len)
{
    unsigned char c = (unsigned char)s[0];
    size_t i = 1;
    if (n == 0) {
        *len = 0;
        return T_END;
    }
    switch (c) {
    case ' ': case '\t': case '\n': case '\f': case '\r':
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\f' || s[i] == '\r')) i++;
        *len = i;
        return T_SPACE;
    case '-':
        if (n > 1 && s[1] == '-') {
            while (i < n && s[i] != '\n') i++;
            *len = i;
            return T_SPACE;
        }
        if (n > 1 && s[1] == '>') i = n > 2 && s[2] == '>' ? 3 : 2;
        *len = i;
        return T_OP;
    case '/':
        if (n > 1 && s[1] == '*') {
            for (i = 2; i + 1 < n && !(s[i] == '*' && s[i + 1] == '/'); i++) {
            }
            *len = i + 1 < n ? i + 2 : n;
            return T_SPACE;
        }
        *len = 1;
        return T_OP;
    case '(': *len = 1; return T_OPEN;
    case ')': *len = 1; return T_CLOSE;
    case ',': *len = 1; return T_COMMA;
    case ';': *len = 1; return T_SEMI;
    case '=': *len = n > 1 && s[1] == '=' ? 2 : 1; return T_OP;
    case '<': *len = n > 1 && (s[1] == '=' || s[1] == '>' || s[1] == '<') ? 2 : 1; return T_OP;
    case '>': *len = n > 1 && (s[1] == '=' || s[1] == '>') ? 2 : 1; return T_OP;
    case '!': *len = n > 1 && s[1] == '=' ? 2 : 1; return T_OP;
    case '|': *len = n > 1 && s[1] == '|' ? 2 : 1; return T_OP;
    case '\'': case '"': case '`': {
        /* a doubled quote is the quote itself, inside the token */
        for (; i < n; i++) {
            if ((unsigned char)s[i] == c) {
                if (i + 1 < n && (unsigned char)s[i + 1] == c) {
                    i++;
                    continue;
                }
                i++;
                break;
            }
        }
        *len = i;
        return c == '\'' ? T_LIT : T_QID;
    }
    case '[':
        while (i < n && s[i] != ']') i++;
        *len = i < n ? i + 1 : n;
        return T_QID;
    case '.':
        if (n > 1 && digit((unsigned char)s[1])) {
            *len = number_len(s, n);
            return T_LIT;
        }
        *len = 1;
        return T_DOT;
    case '?':
        while (i < n && digit((unsigned char)s[i])) i++;
        *len = i;
        return T_LIT;
    case '$': case '@': case ':': case '#':
        while (i < n && id_char((unsigned char)s[i])) i++;
        if (i == 1) {
            *len = 1;
            return T_OP; /* not a parameter: an illegal token SQLite refuses anyway */
        }
        *len = i;
        return T_LIT;
    case 'x': case 'X':
        if (n > 1 && s[1] == '\'') {
            for (i = 2; i < n && s[i] != '\''; i++) {
            }
            *len = i < n ? i + 1 : n;
            return T_LIT;
        }
        break;
    default: break;
    }
    if (digit(c)) {
        *len = number_len(s, n);
        return T_LIT;
    }
    if (id_char(c)) {
        while (i < n && id_char((unsigned char)s[i])) i++;
        *len = i;
        return T_WORD;
    }
    *len = 1; /* + * % & ~ and bytes SQLite refuses */
    return T_OP;
}

struct out {
    char *p;
    size_t cap, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n, bool lower)
{
    for (size_t i = 0; i < n && !o->full; i++) {
        /* room for "..." and the NUL after the last byte that fits */
        if (o->len + 4 >= o->cap) {
            o->full = true;
            break;
        }
        char c = s[i];
        if (lower && c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        o->p[o->len++] = c;
    }
}

size_t edge_router_normalize(const char *sql, size_t len, char *out, size_t outcap)
{
    struct out o = {out, outcap, 0, false};
    if (outcap < 5) {
        if (outcap > 0) out[0] = '\0';
        return 0;
    }
    enum tok prev = T_END;
    size_t i = 0;
    while (i < len && !o.full) {
        size_t tl = 0;
        enum tok t = next_token(sql + i, len - i, &tl);
        const char *ts = sql + i;
        i += tl;
        if (t == T_SPACE) continue;
        if (t == T_SEMI) {
            /* a trailing ';' (and ';;') says nothing; one between statements stays */
            size_t j = i;
            while (j < len) {
                size_t l2 = 0;
                enum tok t2 = next_token(sql + j, len - j, &l2);
                if (t2 != T_SPACE && t2 != T_SEMI) break;
                j += l2;
            }
            if (j >= len) break;
        }
        /* Canonical spacing: none before , ) . ; and none after ( . */
        bool space = prev != T_END && prev != T_OPEN && prev != T_DOT && t != T_COMMA && t != T_CLOSE &&
                     t != T_DOT && t != T_SEMI && !(t == T_OPEN && (prev == T_WORD || prev == T_QID));
        if (space) put(&o, " ", 1, false);
        if (t == T_LIT) {
            put(&o, "?", 1, false);
        } else {
            put(&o, ts, tl, t == T_WORD);
        }
        prev = t;
    }
    if (o.full) {
        memcpy(o.p + o.len, "...", 3);
        o.len += 3;
    }
    o.p[o.len] = '\0';
    return o.len;
}

/* SPDX-License-Identifier: MIT */
/* `edgelite token`: make Ed25519 key pairs and sign client tokens (JWT) that edgelite
 * and sqld both accept. Keys are written as PKCS#8 / SPKI PEM so that OpenSSL and
 * node's crypto can use the same files. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/jwt.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: edgelite token keygen --out PREFIX [--force]\n"
               "       edgelite token create --key PRIVATE_KEY_FILE [--read-only]"
               " [--expires DURATION]\n"
               "  keygen writes PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM)\n"
               "         and prints the raw public key in base64url (for sqld-style configs)\n"
               "  create prints a JWT; DURATION is 30s, 15m, 1h, 7d or plain seconds\n");
}

/* Parse "30s", "15m", "1h", "7d" or "3600" into seconds (> 0). 0 on success. */
static int parse_duration(const char *s, int64_t *out_s)
{
    int64_t v = 0;
    int64_t mult = 1;
    size_t i = 0;
    if (s[0] < '0' || s[0] > '9') {
        return -1;
    }
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (INT64_C(1) << 40)) {
            return -1; /* ~35000 years; anything larger is a typo */
        }
        v = v * 10 + (s[i] - '0');
    }
    switch (s[i]) {
    case '\0': break;
    case 's': mult = 1; i++; break;
    case 'm': mult = 60; i++; break;
    case 'h': mult = 3600; i++; break;
    case 'd': mult = 86400; i++; break;
    default: return -1;
    }
    if (s[i] != '\0' || v == 0) {
        return -1;
    }
    *out_s = v * mult;
    return 0;
}

/* Write all of data to path with the given mode. With force, an existing file is
 * replaced and its mode reset (a reused .key must not stay world-readable). */
static int write_file(const char *path, const char *data, size_t len, mode_t mode, int force)
{
    int flags = O_WRONLY | O_CREAT | (force ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, mode);
    int rv = -1;
    if (fd < 0) {
        fprintf(stderr, "edgelite token: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fchmod(fd, mode) != 0) {
        fprintf(stderr, "edgelite token: %s: chmod: %s\n", path, strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fprintf(stderr, "edgelite token: %s: write: %s\n", path, strerror(errno));
            goto out;
        }
        off += (size_t)n;
    }
    rv = 0;
out:
    if (close(fd) != 0 && rv == 0) {
        fprintf(stderr, "edgelite token: %s: close: %s\n", path, strerror(errno));
        rv = -1;
    }
    return rv;
}

static int cmd_keygen(int argc, char **argv)
{
    const char *prefix = NULL;
    int force = 0;
    char key_path[4096], pub_path[4096];
    uint8_t pk[EDGE_JWT_PK_LEN], sk[EDGE_JWT_SK_LEN];
    struct edge_buf key_pem, pub_pem, raw;
    int rv = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else if (strncmp(argv[i], "--out=", 6) == 0) {
            prefix = argv[i] + 6;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = 1;
        } else {
            fprintf(stderr, "edgelite token keygen: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (prefix == NULL || prefix[0] == '\0') {
        fprintf(stderr, "edgelite token keygen: --out PREFIX is required\n");
        usage(stderr);
        return 2;
    }
    if ((size_t)snprintf(key_path, sizeof(key_path), "%s.key", prefix) >= sizeof(key_path) ||
        (size_t)snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix) >= sizeof(pub_path)) {
        fprintf(stderr, "edgelite token keygen: prefix too long\n");
        return 2;
    }
    /* Check both before writing either, so a refusal leaves no half-written pair. */
    if (!force) {
        const char *paths[2] = {key_path, pub_path};
        for (int i = 0; i < 2; i++) {
            struct stat st;
            if (lstat(paths[i], &st) == 0) {
                fprintf(stderr, "edgelite token keygen: %s exists (use --force to overwrite)\n",
                        paths[i]);
                return 1;
            }
        }
    }
    edge_buf_init(&key_pem, 4096);
    edge_buf_init(&pub_pem, 4096);
    edge_buf_init(&raw, 4096);
    if (edge_jwt_keygen(pk, sk) != EDGE_OK || edge_jwt_seckey_pem(sk, &key_pem) != EDGE_OK ||
        edge_jwt_pubkey_pem(pk, &pub_pem) != EDGE_OK ||
        edge_buf_base64url(&raw, pk, sizeof(pk)) != EDGE_OK) {
        fprintf(stderr, "edgelite token keygen: key generation failed\n");
        goto out;
    }
    if (write_file(key_path, key_pem.data, key_pem.len, 0600, force) != 0 ||
        write_file(pub_path, pub_pem.data, pub_pem.len, 0644, force) != 0) {
        goto out;
    }
    printf("%s\n", raw.data);
    fprintf(stderr, "wrote %s (private, keep secret) and %s (public); the line above is the\n"
                    "raw public key in base64url, accepted by sqld's --auth-jwt-key-file\n",
            key_path, pub_path);
    rv = 0;
out:
    sodium_memzero(sk, sizeof(sk));
    if (key_pem.data != NULL) {
        sodium_memzero(key_pem.data, key_pem.len);
    }
    edge_buf_free(&key_pem);
    edge_buf_free(&pub_pem);
    edge_buf_free(&raw);
    return rv;
}

static int cmd_create(int argc, char **argv)
{
    const char *key = NULL;
    const char *expires = NULL;
    enum edge_jwt_access access = EDGE_JWT_RW;
    int64_t ttl_s = 0;
    uint8_t sk[EDGE_JWT_SK_LEN];
    char msg[EDGE_ERRMSG_SIZE];
    struct edge_buf tok;
    int rv = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (strncmp(argv[i], "--key=", 6) == 0) {
            key = argv[i] + 6;
        } else if (strcmp(argv[i], "--expires") == 0 && i + 1 < argc) {
            expires = argv[++i];
        } else if (strncmp(argv[i], "--expires=", 10) == 0) {
            expires = argv[i] + 10;
        } else if (strcmp(argv[i], "--read-only") == 0) {
            access = EDGE_JWT_RO;
        } else {
            fprintf(stderr, "edgelite token create: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (key == NULL || key[0] == '\0') {
        fprintf(stderr, "edgelite token create: --key PRIVATE_KEY_FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (expires != NULL && parse_duration(expires, &ttl_s) != 0) {
        fprintf(stderr,
                "edgelite token create: bad --expires '%s' (use e.g. 30s, 15m, 1h, 7d or "
                "a number of seconds)\n",
                expires);
        return 2;
    }
    msg[0] = '\0';
    if (edge_jwt_seckey_load(key, sk, msg, sizeof(msg)) != EDGE_OK) {
        fprintf(stderr, "edgelite token create: %s\n", msg);
        return 1;
    }
    time_t now = time(NULL);
    int64_t exp = ttl_s > 0 ? (int64_t)now + ttl_s : 0;
    edge_buf_init(&tok, 16384);
    if (edge_jwt_create(sk, access, exp, (uint64_t)now, &tok) != EDGE_OK) {
        fprintf(stderr, "edgelite token create: signing failed\n");
        goto out;
    }
    printf("%s\n", tok.data);
    rv = 0;
out:
    sodium_memzero(sk, sizeof(sk));
    edge_buf_free(&tok);
    return rv;
}

int edge_cli_token(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "keygen") == 0) {
        return cmd_keygen(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "create") == 0) {
        return cmd_create(argc - 1, argv + 1);
    }
    fprintf(stderr, "edgelite token: unknown sub-command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

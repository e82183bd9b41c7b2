/* SPDX-License-Identifier: MIT */
/* SHA-1 (FIPS 180-4), only for the WebSocket accept key (RFC 6455 4.2.2), where the
 * protocol mandates it; never use it for anything security-relevant. */
#ifndef EDGE_CORE_SHA1_H
#define EDGE_CORE_SHA1_H

#include <stddef.h>
#include <stdint.h>

void edge__sha1(const uint8_t *data, size_t len, uint8_t out[20]);

#endif

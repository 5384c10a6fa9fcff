/*
 * reverse.c: the example's C guest, a YoMo stream function compiled to a
 * WASI reactor module with clang and wasi-libc. It reverses every
 * upper-cased word (tag 0x11) and writes the result with tag 0x12.
 *
 * Build (from examples/wasm; go generate runs the same command). Debian
 * packages: clang lld wasi-libc libclang-rt-14-dev-wasm32.
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
 *     -o testdata/reverse-c.wasm guest-c/reverse.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

/* The host side of the YoMo ABI (module "env"). */
IMPORT("yomo_observe_datatag") void yomo_observe_datatag(uint32_t tag);
IMPORT("yomo_context_tag") uint32_t yomo_context_tag(void);
IMPORT("yomo_context_data_size") uint32_t yomo_context_data_size(void);
IMPORT("yomo_context_data") uint32_t yomo_context_data(void *ptr, uint32_t cap);
IMPORT("yomo_write") uint32_t yomo_write(uint32_t tag, const void *ptr, uint32_t len);

enum { TAG_UPPER = 0x11, TAG_REVERSED = 0x12 };

/* A buffer reused by every call, grown with realloc when a frame is larger. */
static uint8_t *buf;
static uint32_t buf_cap;

EXPORT("yomo_init") int32_t yomo_init(void) {
	buf_cap = 64;
	buf = malloc(buf_cap);
	return buf == NULL ? 1 : 0;
}

EXPORT("yomo_observe_datatags") void yomo_observe_datatags(void) {
	yomo_observe_datatag(TAG_UPPER);
}

EXPORT("yomo_handler") void yomo_handler(void) {
	uint32_t n = yomo_context_data(buf, buf_cap);
	if (n > buf_cap) {
		/* Too large for the buffer: the host copied nothing and told us
		 * how much room it needs. */
		uint8_t *bigger = realloc(buf, n);
		if (bigger == NULL) {
			fprintf(stderr, "reverse: no memory for %u bytes\n", n);
			return;
		}
		buf = bigger;
		buf_cap = n;
		n = yomo_context_data(buf, buf_cap);
	}
	for (uint32_t i = 0, j = n; i + 1 < j; i++, j--) {
		uint8_t c = buf[i];
		buf[i] = buf[j - 1];
		buf[j - 1] = c;
	}
	if (yomo_write(TAG_REVERSED, buf, n) != 0) {
		fprintf(stderr, "reverse: write failed\n");
	}
}

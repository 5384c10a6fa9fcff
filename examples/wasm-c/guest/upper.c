/*
 * upper.c: a YoMo stream function in C, built as a WASI reactor with
 * clang and wasi-libc. It observes tag 0x10 and writes every payload
 * upper-cased with tag 0x11.
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
 *     -Wl,--strip-debug -o upper.wasm upper.c
 */
#include <stdint.h>
#include <stdlib.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

/* The host side of the YoMo ABI (module "env"). */
IMPORT("yomo_observe_datatag") void yomo_observe_datatag(uint32_t tag);
IMPORT("yomo_context_data") uint32_t yomo_context_data(void *ptr, uint32_t cap);
IMPORT("yomo_write") uint32_t yomo_write(uint32_t tag, const void *ptr, uint32_t len);

enum { TAG_IN = 0x10, TAG_OUT = 0x11 };

/* One buffer for every call, grown when a payload does not fit. */
static uint8_t *buf;
static uint32_t cap;

EXPORT("yomo_observe_datatags") void yomo_observe_datatags(void) {
	yomo_observe_datatag(TAG_IN);
}

/* Runs once per instance, after the tags are registered. */
EXPORT("yomo_init") int32_t yomo_init(void) {
	cap = 256;
	buf = malloc(cap);
	return buf == NULL;
}

EXPORT("yomo_handler") void yomo_handler(void) {
	uint32_t n = yomo_context_data(buf, cap);
	if (n > cap) { /* nothing copied: the host says how much room it needs */
		uint8_t *bigger = realloc(buf, n);
		if (bigger == NULL) {
			abort(); /* a trap: the host reports it and starts a fresh instance */
		}
		buf = bigger;
		cap = n;
		n = yomo_context_data(buf, cap);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (buf[i] >= 'a' && buf[i] <= 'z') {
			buf[i] -= 'a' - 'A';
		}
	}
	yomo_write(TAG_OUT, buf, n);
}

/*
 * main.c: a YoMo stream function in C built as a WASI command (the
 * default of clang --target=wasm32-wasi): the host runs its main once
 * per instance, through _start, before anything else. main decides the
 * tags and the greeting here, prints to stdout (shown only when the
 * host's wasm.Config.Stdout is set) and ends with exit(0), as a command
 * does. The handler upper-cases every payload of tag 0x10 and writes it
 * with tag 0x11.
 *
 * Build (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *
 *   clang --target=wasm32-wasi -O2 -Wall -Wextra -Wl,--strip-debug -o command.wasm main.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("yomo_observe_datatag") void yomo_observe_datatag(uint32_t tag);
IMPORT("yomo_context_data_size") uint32_t yomo_context_data_size(void);
IMPORT("yomo_context_data") uint32_t yomo_context_data(void *ptr, uint32_t cap);
IMPORT("yomo_write") uint32_t yomo_write(uint32_t tag, const void *ptr, uint32_t len);

/* Set by main, read by the exports that the host calls after it. */
static uint32_t tag_in, tag_out;

EXPORT("yomo_observe_datatags") void yomo_observe_datatags(void) {
	yomo_observe_datatag(tag_in);
}

EXPORT("yomo_handler") void yomo_handler(void) {
	uint32_t n = yomo_context_data_size();
	uint8_t *buf = malloc(n ? n : 1);
	if (buf == NULL) {
		abort();
	}
	n = yomo_context_data(buf, n);
	for (uint32_t i = 0; i < n; i++) {
		if (buf[i] >= 'a' && buf[i] <= 'z') {
			buf[i] -= 'a' - 'A';
		}
	}
	yomo_write(tag_out, buf, n);
	free(buf);
}

int main(void) {
	tag_in = 0x10;
	tag_out = 0x11;
	printf("command guest: main ran, observing %#x\n", (unsigned)tag_in);
	fflush(stdout);
	exit(0); /* proc_exit(0): the host keeps the instance */
}

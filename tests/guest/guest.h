/*
 * tests/guest/guest.h: the test guest's internal interface between its
 * hardware layer (hw.c: serial port, VGA text screen, PIT/PIC timer, IDT)
 * and its memory work (guest.c). Nothing here is used by the host.
 */
#ifndef SNAPGUEST_GUEST_H
#define SNAPGUEST_GUEST_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since timer_init(), counted by the PIT interrupt. */
extern volatile uint64_t guest_ms;

void hw_init(void);
void timer_init(void);
/* Sleep (hlt) until guest_ms reaches @deadline. */
void idle_until(uint64_t deadline);
/* Stop for good: interrupts off, hlt loop. */
void halt_forever(void) __attribute__((noreturn));

void con_putc(char c);
void con_puts(const char *s);
void con_u64(uint64_t v);
void con_hex(uint64_t v);
/* "key=value" helpers for the serial protocol: " key=123", " key=0x1f". */
void con_kv(const char *key, uint64_t v);
void con_kx(const char *key, uint64_t v);

/* Show the tick counter on line 0 of the VGA text screen. */
void vga_show_tick(uint64_t tick);

void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif

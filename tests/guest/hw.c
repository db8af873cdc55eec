/*
 * tests/guest/hw.c: the test guest's hardware layer. It drives COM1 by
 * polling, writes the VGA text screen at 0xB8000, remaps the 8259 PICs to
 * vectors 32..47, programs PIT channel 0 for a 1 kHz interrupt that counts
 * milliseconds, and installs an IDT whose exception entries print a FAULT
 * line and halt. All of this state lives in guest memory or in device state
 * that QEMU migrates, so it keeps working after a save and restore.
 */
#include "tests/guest/guest.h"

#define COM1		0x3f8
#define PIT_HZ		1193182u
#define PIT_RELOAD	1193u		/* about 1000.15 Hz */
#define VGA_TEXT	((volatile uint16_t *)0xb8000)

volatile uint64_t guest_ms;

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));

extern const uint64_t exc_table[32];
extern char irq_timer[], irq_master[], irq_slave[];

static inline void
outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t
inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

void *
memset(void *s, int c, size_t n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

void *
memcpy(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

void *
memmove(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	if (dp < sp)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

int
memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t
strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

void
con_putc(char c)
{
	/* Wait for the transmit holding register to empty. */
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

void
con_puts(const char *s)
{
	while (*s) {
		if (*s == '\n')
			con_putc('\r');
		con_putc(*s++);
	}
}

void
con_u64(uint64_t v)
{
	char buf[21];
	int i = 20;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	con_puts(buf + i);
}

void
con_hex(uint64_t v)
{
	char buf[17];
	int i = 16;

	buf[i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	con_puts(buf + i);
}

void
con_kv(const char *key, uint64_t v)
{
	con_putc(' ');
	con_puts(key);
	con_putc('=');
	con_u64(v);
}

void
con_kx(const char *key, uint64_t v)
{
	con_putc(' ');
	con_puts(key);
	con_puts("=0x");
	con_hex(v);
}

void
vga_show_tick(uint64_t tick)
{
	static const char label[] = "snapguest tick ";
	char num[21];
	int i = 20, col = 0;

	num[i] = 0;
	do {
		num[--i] = (char)('0' + tick % 10);
		tick /= 10;
	} while (tick);
	for (const char *s = label; *s; s++)
		VGA_TEXT[col++] = (uint16_t)(0x1f00 | (uint8_t)*s);
	for (const char *s = num + i; *s; s++)
		VGA_TEXT[col++] = (uint16_t)(0x1f00 | (uint8_t)*s);
	while (col < 80)
		VGA_TEXT[col++] = 0x1f20;
}

static void
idt_set(int vec, uint64_t handler)
{
	struct idt_gate *g = &idt[vec];

	g->off_lo = (uint16_t)handler;
	g->sel = 0x08;
	g->ist = 0;
	g->type = 0x8e;			/* present, DPL 0, interrupt gate */
	g->off_mid = (uint16_t)(handler >> 16);
	g->off_hi = (uint32_t)(handler >> 32);
	g->zero = 0;
}

void
hw_init(void)
{
	/* COM1: 115200 8N1, FIFO on, interrupts off. */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);
	outb(COM1 + 2, 0xc7);
	outb(COM1 + 4, 0x03);

	/* Blank screen, no cursor: only the tick line ever changes. */
	for (int i = 0; i < 80 * 25; i++)
		VGA_TEXT[i] = 0x0720;
	outb(0x3d4, 0x0a);
	outb(0x3d5, 0x20);

	for (int v = 0; v < 32; v++)
		idt_set(v, exc_table[v]);
	for (int v = 32; v < 40; v++)
		idt_set(v, (uint64_t)irq_master);
	for (int v = 40; v < 48; v++)
		idt_set(v, (uint64_t)irq_slave);
	idt_set(32, (uint64_t)irq_timer);

	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

void
timer_init(void)
{
	/* Remap the PICs to 32..47 and unmask IRQ 0 only. */
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 32);
	outb(0xa1, 40);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xfe);
	outb(0xa1, 0xff);

	/* PIT channel 0, lobyte/hibyte, mode 2 (rate generator). */
	outb(0x43, 0x34);
	outb(0x40, PIT_RELOAD & 0xff);
	outb(0x40, PIT_RELOAD >> 8);
	__asm__ volatile("sti");
}

void
idle_until(uint64_t deadline)
{
	/*
	 * sti takes effect after the next instruction, so "sti; hlt" cannot
	 * lose a wake-up between the check and the hlt.
	 */
	for (;;) {
		__asm__ volatile("cli");
		if (guest_ms >= deadline)
			break;
		__asm__ volatile("sti; hlt");
	}
	__asm__ volatile("sti");
}

void
halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_fault(const uint64_t *frame) __attribute__((noreturn));

void
guest_fault(const uint64_t *frame)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	con_puts("FAULT");
	con_kv("vector", frame[0]);
	con_kx("error", frame[1]);
	con_kx("rip", frame[2]);
	con_kx("cr2", cr2);
	con_puts("\n");
	halt_forever();
}

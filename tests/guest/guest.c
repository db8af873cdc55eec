/*
 * tests/guest/guest.c: the test guest's memory work. It reads its
 * parameters from the multiboot command line and usable RAM from the
 * multiboot memory map, fills that RAM with the pattern of pattern.h
 * (leaving the layout's zero pages zero), prints READY, and then ticks:
 * each tick prints TICK n, shows n on the VGA screen, verifies every filled
 * page when due (OK n or BAD ...), and rewrites a few pages with their next
 * generation. The generation of every page lives in a table in guest memory
 * just below the fill area, so a saved and restored guest checks itself
 * against exactly what it wrote before the save.
 */
#include <stdint.h>

#include "tests/guest/guest.h"
#include "tests/guest/pattern.h"

#define MB_LOADER_MAGIC	0x2badb002u
#define MB_INFO_CMDLINE	(1u << 2)
#define MB_INFO_MMAP	(1u << 6)
#define MAX_RANGES	32
#define MAP_LIMIT	(64ull << 30)	/* what entry.S identity-maps */
#define CMDLINE_MAX	1024

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
};

struct mb_mmap {
	uint32_t size;
	uint64_t addr;
	uint64_t len;
	uint32_t type;
} __attribute__((packed));

/* A run of filled pages: [pfn, pfn + pages), ordinals from @first. */
struct range {
	uint64_t pfn;
	uint64_t pages;
	uint64_t first;
};

struct params {
	uint64_t fill;		/* bytes; 0 = all usable RAM */
	uint64_t seed;
	uint64_t zero;		/* percent of pages left zero */
	uint64_t single;	/* percent of zero pages that are single */
	uint64_t dirty;		/* pages rewritten per tick */
	uint64_t verify;	/* verify every k ticks; 0 = never */
	int verify_set;
	uint64_t tick_ms;
};

extern char _end[];

static struct params prm = {
	.seed = 1, .zero = 25, .single = 20, .dirty = 16, .tick_ms = 100,
};
static char cmdline[CMDLINE_MAX];
static struct sg_layout layout;
static struct range ranges[MAX_RANGES];
static unsigned nranges;
static uint64_t usable_pages, total_pages, zero_pages, nonzero_pages;
static uint32_t *gens;
static uint64_t rng_state;
static uint64_t tick;

static void __attribute__((noreturn))
fatal(const char *what, const char *detail)
{
	con_puts("ERROR ");
	con_puts(what);
	if (detail) {
		con_puts(" '");
		con_puts(detail);
		con_puts("'");
	}
	con_puts("\n");
	halt_forever();
}

static int
parse_u64(const char *s, uint64_t *out, int sizes)
{
	uint64_t v = 0, base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	if (sizes && *s) {
		unsigned shift;

		switch (*s) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -1;
		}
		v <<= shift;
		s++;
	}
	if (*s)
		return -1;
	*out = v;
	return 0;
}

static void
parse_param(char *tok)
{
	char *eq = tok;
	uint64_t v;
	int rc;

	while (*eq && *eq != '=')
		eq++;
	if (!*eq)
		fatal("parameter without value", tok);
	*eq = 0;
	rc = parse_u64(eq + 1, &v, strlen(tok) == 4 && !memcmp(tok, "fill", 4));
	*eq = '=';
	if (rc < 0)
		fatal("bad parameter value", tok);
	*eq = 0;
	if (!memcmp(tok, "fill", 5))
		prm.fill = v;
	else if (!memcmp(tok, "seed", 5))
		prm.seed = v;
	else if (!memcmp(tok, "zero", 5))
		prm.zero = v;
	else if (!memcmp(tok, "single", 7))
		prm.single = v;
	else if (!memcmp(tok, "dirty", 6))
		prm.dirty = v;
	else if (!memcmp(tok, "verify", 7)) {
		prm.verify = v;
		prm.verify_set = 1;
	} else if (!memcmp(tok, "tick_ms", 8))
		prm.tick_ms = v;
	else
		fatal("unknown parameter", tok);
	*eq = '=';
	if ((prm.zero > 100 || prm.single > 100 || prm.tick_ms == 0))
		fatal("parameter out of range", tok);
}

/* Parse "path key=value ..."; the loader puts the kernel's path first. */
static void
parse_cmdline(char *s)
{
	int first = 1;

	while (*s) {
		char *tok;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		tok = s;
		while (*s && *s != ' ')
			s++;
		if (*s)
			*s++ = 0;
		if (!first)
			parse_param(tok);
		first = 0;
	}
}

static uint64_t
max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* Usable pages of one map entry at or above @floor, below MAP_LIMIT. */
static void
entry_span(const struct mb_mmap *e, uint64_t floor, uint64_t *lo, uint64_t *hi)
{
	uint64_t a = max_u64(e->addr, floor), b = e->addr + e->len;

	if (b > MAP_LIMIT)
		b = MAP_LIMIT;
	a = (a + SG_PAGE_SIZE - 1) & ~(uint64_t)(SG_PAGE_SIZE - 1);
	b &= ~(uint64_t)(SG_PAGE_SIZE - 1);
	*lo = a;
	*hi = b > a ? b : a;
}

/*
 * Place the generation table right after everything the loader gave us and
 * build the list of fill ranges above it.
 */
static void
plan_memory(const struct mb_info *mbi)
{
	uint64_t reserved = (uint64_t)_end, avail = 0, want, table, start;
	uint64_t mm = mbi->mmap_addr, mm_end = mm + mbi->mmap_length;

	reserved = max_u64(reserved, (uint64_t)mbi + sizeof(*mbi));
	reserved = max_u64(reserved, mm_end);
	if (mbi->flags & MB_INFO_CMDLINE)
		reserved = max_u64(reserved, mbi->cmdline +
				   strlen((const char *)(uint64_t)mbi->cmdline) + 1);
	reserved = (reserved + SG_PAGE_SIZE - 1) & ~(uint64_t)(SG_PAGE_SIZE - 1);

	for (uint64_t p = mm; p < mm_end; ) {
		const struct mb_mmap *e = (const struct mb_mmap *)p;
		uint64_t lo, hi;

		if (e->type == 1) {
			entry_span(e, reserved, &lo, &hi);
			avail += (hi - lo) / SG_PAGE_SIZE;
		}
		p += e->size + 4;
	}
	usable_pages = avail;
	want = prm.fill ? prm.fill / SG_PAGE_SIZE : avail;
	if (want > avail)
		want = avail;
	/* The table needs 4 bytes a page; it only shrinks what is left. */
	table = (want * sizeof(uint32_t) + SG_PAGE_SIZE - 1) &
		~(uint64_t)(SG_PAGE_SIZE - 1);
	gens = (uint32_t *)reserved;
	start = reserved + table;

	for (uint64_t p = mm; p < mm_end && total_pages < want; ) {
		const struct mb_mmap *e = (const struct mb_mmap *)p;
		uint64_t lo, hi, n;

		p += e->size + 4;
		if (e->type != 1)
			continue;
		entry_span(e, start, &lo, &hi);
		n = (hi - lo) / SG_PAGE_SIZE;
		if (n > want - total_pages)
			n = want - total_pages;
		if (n == 0)
			continue;
		/* The table must sit in the same usable entry as its start. */
		if (nranges == 0 && lo != start)
			fatal("no room for the generation table", NULL);
		if (nranges == MAX_RANGES)
			fatal("too many memory ranges", NULL);
		ranges[nranges].pfn = lo / SG_PAGE_SIZE;
		ranges[nranges].pages = n;
		ranges[nranges].first = total_pages;
		nranges++;
		total_pages += n;
	}
	if (total_pages == 0)
		fatal("no memory to fill", NULL);
	for (uint64_t i = 0; i < table / sizeof(uint32_t); i++)
		gens[i] = 0;
}

static uint64_t *
page_ptr(uint64_t pfn)
{
	return (uint64_t *)(pfn << SG_PAGE_SHIFT);
}

static void
zero_page(uint64_t *p)
{
	for (unsigned j = 0; j < SG_PAGE_WORDS; j += 4) {
		p[j] = 0;
		p[j + 1] = 0;
		p[j + 2] = 0;
		p[j + 3] = 0;
	}
}

static uint64_t
fill_all(void)
{
	uint64_t d = SG_DIGEST_INIT;

	for (unsigned r = 0; r < nranges; r++) {
		for (uint64_t i = 0; i < ranges[r].pages; i++) {
			uint64_t pfn = ranges[r].pfn + i;
			uint64_t *p = page_ptr(pfn);
			int z = sg_page_is_zero(&layout, pfn);

			if (z) {
				/* Fresh RAM is zero; write only if it is not. */
				if (sg_page_nonzero(p))
					zero_page(p);
				zero_pages++;
			} else {
				sg_fill_page(p, sg_page_key(prm.seed, pfn, 0));
			}
			d = sg_digest_step(d, prm.seed, pfn, z, 0);
		}
	}
	nonzero_pages = total_pages - zero_pages;
	return d;
}

static void
verify_all(void)
{
	uint64_t bad = 0, first = 0;

	for (unsigned r = 0; r < nranges; r++) {
		for (uint64_t i = 0; i < ranges[r].pages; i++) {
			uint64_t pfn = ranges[r].pfn + i;
			const uint64_t *p = page_ptr(pfn);
			uint64_t diff;

			if (sg_page_is_zero(&layout, pfn))
				diff = sg_page_nonzero(p);
			else
				diff = sg_check_page(p, sg_page_key(prm.seed,
					pfn, gens[ranges[r].first + i]));
			if (diff && bad++ == 0)
				first = pfn;
		}
	}
	if (bad == 0) {
		con_puts("OK ");
		con_u64(tick);
		con_puts("\n");
		return;
	}
	con_puts("BAD");
	con_kv("page", first);
	con_kx("addr", first << SG_PAGE_SHIFT);
	con_kv("tick", tick);
	con_kv("count", bad);
	con_puts("\n");
}

static uint64_t
next_rand(void)
{
	/* xorshift64*; the state lives in guest memory and migrates. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void
dirty_pages(void)
{
	if (nonzero_pages == 0)
		return;
	for (uint64_t n = 0; n < prm.dirty; n++) {
		uint64_t ord = next_rand() % total_pages;
		unsigned r = 0;
		uint64_t pfn;

		/* Walk forward to the next page that is not a zero page. */
		for (;;) {
			while (ord >= ranges[r].first + ranges[r].pages)
				r++;
			pfn = ranges[r].pfn + (ord - ranges[r].first);
			if (!sg_page_is_zero(&layout, pfn))
				break;
			if (++ord == total_pages) {
				ord = 0;
				r = 0;
			}
		}
		gens[ord]++;
		sg_fill_page(page_ptr(pfn), sg_page_key(prm.seed, pfn,
							gens[ord]));
	}
}

static void
print_config(void)
{
	con_puts("SNAPGUEST version=1");
	con_kv("usable", usable_pages * SG_PAGE_SIZE);
	con_kv("seed", prm.seed);
	con_kv("zero", prm.zero);
	con_kv("single", prm.single);
	con_kv("dirty", prm.dirty);
	con_kv("verify", prm.verify);
	con_kv("tick_ms", prm.tick_ms);
	con_kx("table", (uint64_t)gens);
	con_puts("\n");
	for (unsigned r = 0; r < nranges; r++) {
		con_puts("RANGE");
		con_kx("pfn", ranges[r].pfn);
		con_kv("pages", ranges[r].pages);
		con_puts("\n");
	}
}

void guest_main(uint32_t magic, uint32_t mbi_addr);

void
guest_main(uint32_t magic, uint32_t mbi_addr)
{
	const struct mb_info *mbi = (const struct mb_info *)(uint64_t)mbi_addr;
	uint64_t digest, t0, next;

	hw_init();
	if (magic != MB_LOADER_MAGIC)
		fatal("not started by a multiboot loader", NULL);
	if (!(mbi->flags & MB_INFO_MMAP))
		fatal("no memory map from the loader", NULL);
	if (mbi->flags & MB_INFO_CMDLINE) {
		const char *s = (const char *)(uint64_t)mbi->cmdline;
		size_t n = strlen(s);

		if (n >= CMDLINE_MAX)
			fatal("command line too long", NULL);
		memcpy(cmdline, s, n + 1);
		parse_cmdline(cmdline);
	}
	plan_memory(mbi);
	if (!prm.verify_set)	/* every tick up to 64 MiB, then rarer */
		prm.verify = total_pages / 16384 + 1;
	sg_layout_init(&layout, prm.seed, (unsigned)prm.zero,
		       (unsigned)prm.single);
	rng_state = sg_mix64(prm.seed ^ 0x6469727479ull) | 1;
	print_config();

	timer_init();
	t0 = guest_ms;
	digest = fill_all();
	con_puts("READY");
	con_kv("fill", total_pages * SG_PAGE_SIZE);
	con_kv("pages", total_pages);
	con_kv("zero", zero_pages);
	con_kx("digest", digest);
	con_kv("ms", guest_ms - t0);
	con_puts("\n");

	next = guest_ms + prm.tick_ms;
	for (;;) {
		idle_until(next);
		next += prm.tick_ms;
		if (next <= guest_ms)	/* work overran: do not burst */
			next = guest_ms + prm.tick_ms;
		tick++;
		con_puts("TICK ");
		con_u64(tick);
		con_puts("\n");
		vga_show_tick(tick);
		/* Verify before dirtying, so a restored guest's first check
		 * sees memory exactly as it was restored. */
		if (prm.verify && tick % prm.verify == 0)
			verify_all();
		dirty_pages();
	}
}

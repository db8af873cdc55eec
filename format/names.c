/*
 * format/names.c: small pure helpers shared by the writer and the reader:
 * section names, entry-name and temporary-name rules, digest text.
 */
#include <stdio.h>
#include <string.h>

#include "format/fmt_int.h"

const char *
fmt_sect_name(uint32_t type)
{
	switch (type) {
	case FMT_S_BLOCKS:   return "blocks";
	case FMT_S_BITMAP:   return "bitmap";
	case FMT_S_PAGESUM:  return "page checksums";
	case FMT_S_DEVSTATE: return "device state";
	case FMT_S_META:     return "metadata";
	case FMT_S_ENTRIES:  return "entries";
	default:             return "unknown";
	}
}

int
fmt_entry_name_ok(const char *name, size_t len)
{
	if (name == NULL || len == 0 || len > FMT_MAX_ENTRY_NAME)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

void
fmt_digest_hex(const struct fmt_digest *d, char out[33])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[d->bytes[i] >> 4];
		out[2 * i + 1] = hex[d->bytes[i] & 15];
	}
	out[32] = '\0';
}

bool
fmt_is_temp_name(const char *name)
{
	size_t len = strlen(name);
	const char *suffix;

	/* ".NAME.tmp-XXXXXX": a dot, a non-empty NAME, ".tmp-", 6 chars. */
	if (len < 1 + 1 + 5 + 6 || name[0] != '.')
		return false;
	suffix = name + len - 11;
	return memcmp(suffix, ".tmp-", 5) == 0 &&
	       strchr(suffix + 5, '/') == NULL;
}

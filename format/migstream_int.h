/*
 * format/migstream_int.h: what the migration stream parser
 * (format/migstream.c) and synthesizer (format/migsynth.c) share: the
 * stream's constants and the preamble check.
 */
#ifndef SNAP_FORMAT_MIGSTREAM_INT_H
#define SNAP_FORMAT_MIGSTREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "format/migstream.h"

/* Stream constants (migration/savevm.h, migration/ram.c in QEMU 7.2). */
#define QEVM_MAGIC              0x5145564Du
#define QEVM_VERSION            3u
#define REC_EOF                 0x00
#define REC_SECTION_START       0x01
#define REC_SECTION_PART        0x02
#define REC_SECTION_END         0x03
#define REC_SECTION_FULL        0x04
#define REC_SUBSECTION          0x05
#define REC_VMDESCRIPTION       0x06
#define REC_CONFIGURATION       0x07
#define REC_COMMAND             0x08
#define REC_FOOTER              0x7E

#define CMD_OPEN_RETURN_PATH    1
#define CMD_PING                2
#define CMD_POSTCOPY_ADVISE     3
#define CMD_ENABLE_COLO         8
#define CMD_RECV_BITMAP         10

#define RAM_FLAG_FULL           0x001u
#define RAM_FLAG_ZERO           0x002u
#define RAM_FLAG_MEM_SIZE       0x004u
#define RAM_FLAG_PAGE           0x008u
#define RAM_FLAG_EOS            0x010u
#define RAM_FLAG_CONTINUE       0x020u
#define RAM_FLAG_XBZRLE         0x040u
#define RAM_FLAG_HOOK           0x080u
#define RAM_FLAG_COMPRESS_PAGE  0x100u
#define RAM_FLAG_MULTIFD_FLUSH  0x200u
#define RAM_FLAG_MASK           ((uint64_t)MIG_PAGE_SIZE - 1)

#define RAM_IDSTR               "ram"
#define RAM_VERSION             4u

/*
 * Parse @pre followed by a RAM START header: @pre must be exactly one
 * stream preamble (header, configuration, commands). Returns 0 and sets
 * *@ignore_shared, or the parser's error.
 */
int mig_preamble_check(const uint8_t *pre, size_t len, bool *ignore_shared,
		       struct snap_err *err);

#endif

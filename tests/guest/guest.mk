# tests/guest/guest.mk: build the test guest, a freestanding multiboot
# kernel, with its own compiler flags. It never takes CFLAGS or OPT, so the
# sanitizer and fuzz builds leave it alone. Included by the top Makefile,
# which defines GUEST ($(O)/guest/snapguest.elf).

GUEST_CC      ?= gcc
GUEST_CFLAGS  := -std=c11 -O2 -g -ffreestanding -fno-builtin -nostdlib \
                 -fno-pic -fno-pie -mcmodel=small -mno-red-zone \
                 -mgeneral-regs-only -mno-sse -mno-mmx -mno-80387 \
                 -fno-stack-protector -fno-asynchronous-unwind-tables \
                 -fno-tree-loop-distribute-patterns -fno-strict-aliasing \
                 -Wall -Wextra -Wshadow -Wstrict-prototypes \
                 -Wmissing-prototypes -Wpointer-arith -Wundef \
                 $(if $(filter 1,$(WERROR)),-Werror) -MMD -MP -I.
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,tests/guest/snapguest.ld \
                 -Wl,--build-id=none -Wl,-z,max-page-size=0x1000 \
                 -Wl,--no-warn-rwx-segments
GUEST_OBJ     := $(O)/guest/entry.o $(O)/guest/hw.o $(O)/guest/guest.o

$(O)/guest/%.o: tests/guest/%.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(O)/guest/%.o: tests/guest/%.S
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST): $(GUEST_OBJ) tests/guest/snapguest.ld
	$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJ)

GUEST_TARGET := $(GUEST)

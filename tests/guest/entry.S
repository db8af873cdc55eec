/*
 * tests/guest/entry.S: the test guest's way from a multiboot loader into
 * 64-bit C code, and its interrupt entry points.
 *
 * QEMU's multiboot loader refuses ELF64 files unless the header carries the
 * address fields (flag bit 16), so the header below names the load range and
 * the 32-bit entry point itself. The entry stub zeroes .bss, identity-maps
 * the first 64 GiB with 2 MiB pages, enters long mode and calls
 * guest_main(magic, mbi). Interrupt stubs: exceptions 0..31 go to
 * guest_fault() and never return; IRQ 0 (the PIT, remapped to vector 32)
 * counts milliseconds in guest_ms; other IRQs are acknowledged and ignored.
 */

#define MB_MAGIC	0x1BADB002
#define MB_FLAGS	((1 << 0) | (1 << 1) | (1 << 16))
#define PD_ENTRIES	(64 * 512)	/* 64 GiB of 2 MiB pages */

	.section .multiboot, "a"
	.align 4
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	.long mb_header		/* header_addr */
	.long __load_start	/* load_addr */
	.long __load_end	/* load_end_addr */
	.long __bss_end		/* bss_end_addr */
	.long _start32		/* entry_addr */

	.section .bss
	.align 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4096 * 64
	.align 16
stack:	.skip 65536
stack_top:

	.section .rodata
	.align 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
gdt_end:
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

	.section .text
	.code32
	.globl _start32
_start32:
	cli
	cld
	/* Keep the multiboot magic and info pointer in esi and ebp. */
	movl %eax, %esi
	movl %ebx, %ebp

	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl
	movl $stack_top, %esp

	/* pd[i] = (i << 21) | present | writable | 2 MiB page */
	movl $pd, %edi
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax
	movl %eax, (%edi)
	movl %ecx, %eax
	shrl $11, %eax
	movl %eax, 4(%edi)
	addl $8, %edi
	incl %ecx
	cmpl $PD_ENTRIES, %ecx
	jne 1b

	movl $pdpt, %edi
	movl $(pd + 3), %eax
	movl $64, %ecx
2:	movl %eax, (%edi)
	addl $4096, %eax
	addl $8, %edi
	decl %ecx
	jnz 2b
	movl $(pdpt + 3), pml4

	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	lgdt gdt_ptr
	ljmp $0x08, $start64

	.code64
start64:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorw %ax, %ax
	movw %ax, %fs
	movw %ax, %gs
	movq $stack_top, %rsp
	movl %esi, %edi
	movl %ebp, %esi
	call guest_main
3:	cli
	hlt
	jmp 3b

/* Exceptions: push a dummy error code where the CPU pushes none. */
	.macro exc_noerr n
	.globl exc\n
exc\n:	pushq $0
	pushq $\n
	jmp exc_common
	.endm
	.macro exc_err n
	.globl exc\n
exc\n:	pushq $\n
	jmp exc_common
	.endm

	exc_noerr 0
	exc_noerr 1
	exc_noerr 2
	exc_noerr 3
	exc_noerr 4
	exc_noerr 5
	exc_noerr 6
	exc_noerr 7
	exc_err 8
	exc_noerr 9
	exc_err 10
	exc_err 11
	exc_err 12
	exc_err 13
	exc_err 14
	exc_noerr 15
	exc_noerr 16
	exc_err 17
	exc_noerr 18
	exc_noerr 19
	exc_noerr 20
	exc_err 21
	exc_noerr 22
	exc_noerr 23
	exc_noerr 24
	exc_noerr 25
	exc_noerr 26
	exc_noerr 27
	exc_noerr 28
	exc_err 29
	exc_err 30
	exc_noerr 31

exc_common:
	/* Frame: vector, error, rip, cs, rflags, rsp, ss. */
	movq %rsp, %rdi
	andq $-16, %rsp
	call guest_fault
4:	cli
	hlt
	jmp 4b

	.section .rodata
	.align 8
	.globl exc_table
exc_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc\n
	.endr

	.section .text
	.globl irq_timer
irq_timer:
	pushq %rax
	incq guest_ms(%rip)
	movb $0x20, %al
	outb %al, $0x20
	popq %rax
	iretq

	.globl irq_master
irq_master:
	pushq %rax
	movb $0x20, %al
	outb %al, $0x20
	popq %rax
	iretq

	.globl irq_slave
irq_slave:
	pushq %rax
	movb $0x20, %al
	outb %al, $0xa0
	outb %al, $0x20
	popq %rax
	iretq

	.section .note.GNU-stack, "", @progbits

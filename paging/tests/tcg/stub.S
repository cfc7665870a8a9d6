/* Flat multiboot (a.out kludge) image for paging/tests/tcg_mmu.rs, loaded at 0x100000.
 * 32-bit entry: load the GDT, set CR4 (PAE|PGE, plus LA57 for 5-level) from PARAM_CR4,
 * CR3 from PARAM_CR3, EFER.LME|NXE, then CR0.PG|WP|PE and far-jump to 64-bit code, which
 * runs the probe list at PROBES and reports each result on the debug console (port 0xe9):
 *   'V' value 0   for a read,   'W' value 0 for a write,   'F' cr2 error-code for a #PF,
 * 17 bytes per probe, then exits through isa-debug-exit (QEMU status 33).
 * The host writes the IDT, the parameters, the probe list and the page tables (built by
 * pvio-paging) into the image before booting it. Assembled with GNU as, linked with ld. */

        .equ LOAD,        0x100000
        .equ IDT,         0x102000
        .equ PARAM_CR4,   0x103000
        .equ PARAM_CR3,   0x103008
        .equ STACK_TOP,   0x108000
        .equ PROBES,      0x108000

        .intel_syntax noprefix
        .text
        .code32
        .globl _start
_start:
mb_header:
        .long 0x1BADB002                  /* multiboot magic */
        .long 0x00010000                  /* flags: address fields valid (a.out kludge) */
        .long -(0x1BADB002 + 0x00010000)  /* checksum */
        .long mb_header                   /* header_addr */
        .long LOAD                        /* load_addr */
        .long 0                           /* load_end_addr: whole file */
        .long 0                           /* bss_end_addr: none */
        .long entry32                     /* entry_addr */

entry32:
        cli
        lgdt [gdt_ptr]
        mov eax, [PARAM_CR4]
        mov cr4, eax                      /* PAE | PGE (| LA57), paging still off */
        mov eax, [PARAM_CR3]
        mov cr3, eax
        mov ecx, 0xC0000080               /* IA32_EFER */
        rdmsr
        or eax, 0x900                     /* LME | NXE */
        wrmsr
        mov eax, cr0
        or eax, 0x80010001                /* PG | WP | PE */
        mov cr0, eax
        .byte 0xEA                        /* jmp far 0x08:entry64 */
        .long entry64
        .word 0x08

        .code64
entry64:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov rsp, STACK_TOP
        lidt [idt_ptr]
        mov rbx, PROBES
next:
        mov rax, [rbx]                    /* kind: 0 read, 1 write, 2 end */
        cmp rax, 2
        je done
        mov rsi, [rbx + 8]                /* virtual address */
        cmp rax, 1
        je do_write
        mov rdx, [rsi]                    /* the read through the tables under test */
        mov al, 'V'
        jmp report
do_write:
        mov rdx, [rbx + 16]
        mov [rsi], rdx                    /* the write through the tables under test */
        mov al, 'W'
report:
        out 0xE9, al
        mov rax, rdx
        call emit_q
        xor eax, eax
        call emit_q
resume:
        add rbx, 24
        jmp next
done:
        mov al, 0x10
        out 0xF4, al                      /* isa-debug-exit: QEMU exits with (0x10 << 1) | 1 */
        hlt

emit_q:                                   /* rax -> 8 bytes on port 0xe9, little-endian */
        mov ecx, 8
1:      out 0xE9, al
        shr rax, 8
        loop 1b
        ret

        .globl pf_handler
pf_handler:                               /* #PF: 'F', CR2, error code; resume at the next probe */
        mov al, 'F'
        out 0xE9, al
        mov rax, cr2
        call emit_q
        mov rax, [rsp]
        call emit_q
        add rsp, 8                        /* drop the error code */
        lea rax, [rip + resume]
        mov [rsp], rax                    /* return to `resume` */
        iretq

        .globl other_handler
other_handler:                            /* any other exception: 'X', then exit 35 */
        mov al, 'X'
        out 0xE9, al
        mov al, 0x11
        out 0xF4, al
        hlt

        .p2align 3
gdt:
        .quad 0
        .quad 0x00AF9B000000FFFF          /* 0x08: 64-bit code */
        .quad 0x00CF93000000FFFF          /* 0x10: data */
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .quad gdt
idt_ptr:
        .word 32 * 16 - 1
        .quad IDT

        .globl handlers
handlers:                                 /* offsets the host reads: pf, other */
        .long pf_handler
        .long other_handler

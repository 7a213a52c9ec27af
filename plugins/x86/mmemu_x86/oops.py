"""The oops a kernel-mode page fault ends in, and the segfault line of a user one, in the
kernel's words for the era (arch/x86/mm/fault.c ``show_fault_oops``/``no_context``/
``dump_pagetable``/``show_signal_msg``; arch/x86/kernel/dumpstack.c ``__die``;
lib/dump_stack.c). The eras, each from the source (or the real output) named in its rule:

- i386 before 2.6.17: ``Unable to handle kernel paging request at virtual address ...``,
  ``printing eip:`` and the eip on lines of their own, one line per ``*pde``/``*pte``;
  2.6.17 to 2.6.23 the same with ``BUG: unable to handle kernel``; 2.6.24 and 2.6.25
  ``printing eip: %08lx *pde = ... *pte = ...`` on one line (``printing ip:`` in 2.6.25).
- x86_64 before 2.6.26: ``Unable to handle kernel paging request at ... RIP:`` and the
  address on the next line, then ``PGD PUD PMD PTE``.
- 2.6.26 to 5.1: ``BUG: unable to handle kernel paging request at ...`` and an ``IP:``
  line (4.15 to 5.1 without it, 5.0 and 5.1 with ``#PF error: [WRITE]``).
- since 5.2: ``BUG: unable to handle page fault for address: ...``, ``#PF: supervisor
  write access in kernel mode``, ``#PF: error_code(0x0002) - not-present page``.

Before 2.6.26 the i386 page-table line is what the kernel reads through ``__va(cr3)``
itself (:func:`dump_pagetable_32`), word for word; from 2.6.26 ``dump_pagetable`` walks
the levels. Where the kernel prints ``func+0x12/0x40`` mmemu prints the symbol kallsyms
(and the loaded modules) know, else the address.

The rest of the oops -- the task line, the register dump, ``Code:``, ``Call Trace:``,
``Modules linked in:``, the end marker and the executive summary -- comes from the
emulated CPU's registers when code on it faulted (or called an exported kernel function
whose implementation faulted: that function is the RIP), in the words of the releases
whose traps/dumpstack/process sources were read (i386 2.6.20 .. 2.6.27, 2.6.32, 3.0 and
3.1 .. 4.14, x86_64 2.6.26, 2.6.27, 2.6.32, 3.0 and 3.1 and later; the releases between are
placed with them, as the rules say); an access made through the API has no registers, and its oops says so
on its IP line. i386 4.15 .. 4.17's process_32.c was not found in any stored tree: its
register lines after ``EIP: %pS`` are placed as 5.10's (:func:`i386_regs_short_eip`), inside
that era's dumpstack.c form (read). No release
prints ``Hardware name:``: dump_stack_print_info prints it only when dump_stack_arch_desc_str
was set from the DMI tables (lib/dump_stack.c, 3.10 .. 6.x), and mmemu's machine has none.
"""

from __future__ import annotations

import random

from mmemu.eras import EraTable, Feature, Variant
from mmemu.faults import Fault
from mmemu.units import PAGE_SIZE

from .codec import X86_PF_INSTR, X86_PF_PK, X86_PF_PROT, X86_PF_RSVD, X86_PF_USER, X86_PF_WRITE

#: The 3.0 tree read for the register dump: dumpstack.c, dumpstack_32.c, dumpstack_64.c,
#: process.c, process_32.c and process_64.c at the commit of its Makefile (3.0.31), an ARM
#: tablet's kernel whose x86 files are the stable release's (process_64.c has 3.0.y's
#: switch_fpu_prepare backport; nothing vendor-specific in the six files).
_READ_30 = "tuxafgmur/Espresso-Kernel 1083be51, Makefile 3.0.31"

#: The oops and segfault wording of each era (arch/x86/mm/fault.c, arch/x86/kernel/dumpstack.c).
OOPS = EraTable(
    Variant("header", [("2.6.26", "bug_unable"), ("5.2", "pf")], before="unable",
            source="arch/x86/mm/fault.c: 'Unable to handle kernel paging request' (i386/x86_64 before the "
                   "2.6.26 unification), 'BUG: unable to handle kernel paging request' (2.6.26), "
                   "'BUG: unable to handle page fault for address:' with #PF lines (5.2, show_fault_oops)"),
    Variant("ip_line", [("4.14", "short"), ("4.15", None)], before="long",
            source="arch/x86/mm/fault.c show_fault_oops: 'IP: [<%p>] %pS' until 4.13, 'IP: %pS' in 4.14, "
                   "gone in 4.15 (the RIP line of __show_regs says it)"),
    Feature("pf_error_line", since="5.0", source="arch/x86/mm/fault.c (5.0): '#PF error: [WRITE]' tokens"),
    Feature("p4d", since="4.12", source="arch/x86/mm/fault.c dump_pagetable prints P4D since 5-level "
                                       "support (4.12)"),
    Variant("header_32", [("2.6.17", "bug_printing_eip"), ("2.6.24", "eip_line"), ("2.6.26", "bug_unable"),
                          ("5.2", "pf")], before="unable",
            source="arch/i386/mm/fault.c do_page_fault: 'Unable to handle kernel NULL pointer dereference' and "
                   "' printing eip:' lines (2.6.12 read; a vanilla 2.6.16 oops on LKML, 'EFLAGS: 00010286 "
                   "(2.6.16 #1)', prints 'Unable'); 'BUG: unable to handle kernel' (a 2.6.17-rc1 git oops on "
                   "LKML prints it; 2.6.18, 2.6.20, 2.6.21, 2.6.22 read); arch/x86/mm/fault_32.c (2.6.24 read): "
                   "printk(KERN_ALERT \"printing eip: %08lx \", regs->eip) then '*pde = %08lx ' on the same line; "
                   "show_fault_oops from 2.6.26 (2.6.27 read)"),
    Variant("eip_word", [("2.6.25", "ip")], before="eip",
            source="arch/x86/mm/fault_32.c: 'printing eip: %08lx ' (2.6.24), 'printing ip: %08lx ' after the "
                   "regs->eip -> regs->ip rename of the 2.6.25 merge window (torvalds/linux fault_32.c at "
                   "03252919b79891063cf99145612360efbdf9500b, read)"),
    Feature("pdpt_line", since="2.6.22",
            source="arch/i386/mm/fault.c (2.6.22 read, ut-osa/txos): '*pdpt = %016Lx' for PAE, then '*pde = "
                   "%016Lx' read through __va() when the pdpt entry is a present lowmem page; 2.6.21 (read) reads "
                   "one unsigned long at __va(cr3)[address >> 22] whatever the paging mode"),
    Variant("pte_rule", [("2.6.22", "lowmem"), ("2.6.24", "lowmem_nopse")], before="no_highpte",
            source="arch/i386/mm/fault.c: '#ifndef CONFIG_HIGHPTE if (page & 1)' (2.6.12 .. 2.6.21 read); "
                   "'(page >> PAGE_SHIFT) < max_low_pfn && (page & _PAGE_PRESENT)' (2.6.22 read), '&& !(page & "
                   "_PAGE_PSE)' added (arch/x86/mm/fault_32.c 2.6.24 read)"),
    Variant("segfault_32", [("2.6.23", "eip"), ("2.6.25", "ip_08lx"), ("2.6.27", "ip_p")], before=None,
            source="arch/i386/mm/fault.c: no line before show_unhandled_signals (2.6.20, 2.6.21, 2.6.22 read); "
                   "'%s[%d]: segfault at %08lx eip %08lx esp %08lx error %lx' (2.6.23: a grsecurity tree with "
                   "tsk->pid read; arch/x86/mm/fault_32.c 2.6.24 read); 'segfault at %lx ip %08lx sp %08lx error "
                   "%lx' + print_vma_addr (torvalds/linux fault_64.c at 03252919, 2.6.25 merge window, read); "
                   "'segfault at %lx ip %p sp %p error %lx' (arch/x86/mm/fault.c 2.6.27 read; 2.6.26 not read)"),
    Variant("segfault_64", [("2.6.23", "rip_lx"), ("2.6.25", "ip_lx"), ("2.6.27", "ip_p")], before="rip_016lx",
            source="arch/x86_64/mm/fault.c: 'segfault at %016lx rip %016lx rsp %016lx error %lx' (2.6.12; still "
                   "in 2.6.22-rc2, the printk_ratelimit patch of linux-mm, read); 'segfault at %lx rip %lx rsp "
                   "%lx error %lx' with show_unhandled_signals (arch/x86/mm/fault_64.c 2.6.24 read); 'at %lx ip "
                   "%lx sp %lx' (2.6.25 merge window, read); '%p' (2.6.27 read)"),
    Variant("die_header_32", [("2.6.24", "trailing"), ("4.8", "leading")], before="classic",
            source="arch/i386/kernel/traps.c die(): 'printk(KERN_EMERG \"%s: %04lx [#%d]\\n\"' and the flags on "
                   "a line of their own (2.6.12 .. 2.6.21 read, with report_bug(regs->eip)); arch/x86/kernel/"
                   "traps_32.c die() (2.6.24 read): '%s: %04lx [#%d] ' and each flag followed by a blank on the "
                   "same line; arch/i386/kernel/traps.c die() of 2.6.22 (read, ut-osa/txos e53b0188) still prints "
                   "'%s: %04lx [#%d]\\n' and KERN_EMERG 'SMP ' on a line of its own, and so does 2.6.23's (read, "
                   "linux-scraping/linux-grsecurity db0edb92, Makefile 2.6.23); from 4.8 the shared dumpstack.c __die (rule "
                   "die_header)"),
    Feature("die_oops_prefix", since="6.10",
            source="arch/x86/kernel/dumpstack.c __die_header: 'Oops: %s: %04lx [#%d]...' ('x86/dumpstack: Use "
                   "uniform \"Oops: \" prefix for die() messages', Alex Shi, tip x86-bugs-2024-05-13 for 6.10): "
                   "a page fault's __die(\"Oops\") reads 'Oops: Oops: 0002 [#1] ...'"),
    Feature("task_line_uid", since="6.11",
            source="lib/dump_stack.c dump_stack_print_info: 'CPU: %d UID: %u PID: %d Comm: %.20s ...' "
                   "(__kuid_val(current_real_cred()->euid); Suren Baghdasaryan, June 2024, in linux-next "
                   "20240624, merged for 6.11); mmemu's tasks have no credentials: they run as root (0)"),
    Feature("nopti", since="4.15", source="arch/x86/kernel/dumpstack.c __die_header: ' NOPTI' (4.15, PTI)"),
    Variant("die_header", [("2.6.29", "trailing"), ("4.8", "leading")], before="classic",
            source="arch/x86/kernel/traps_64.c __die: '%s: %04lx [%u] ' then 'SMP ' (2.6.26 read, "
                   "katadelos/linux-2.6.26-lab126 5386f5d9; 2.6.27 read, rmcc/gp_one_kernel 57d93f05); arch/x86/kernel/dumpstack.c __die: '%s: %04lx "
                   "[#%d] ' with each flag followed by a blank (2.6.32 read, leemgs/OptimusOneKernel-KandroidCommunity "
                   "bb7be218; 3.x); 2.6.28 .. 2.6.31 not read: the unified form placed at 2.6.29, the release after "
                   "the last traps_64.c; arch/x86/kernel/dumpstack.c __die of 4.8 (read, WindRiver-Labs/kernel-4.8.x) "
                   "'%s: %04lx [#%d]%s%s%s%s\\n' with ' PREEMPT' ' SMP' ' DEBUG_PAGEALLOC' ' KASAN', each flag "
                   "preceded by a blank (a v4.9.227 merge shows the same against an older tree's trailing form); "
                   "the trailing form ('printk(\"DEBUG_PAGEALLOC \")', 'printk(\"KASAN\")') is still the one "
                   "Christian Borntraeger's debug_pagealloc_enabled() patch (linux-mm, Jan 2016, for 4.6) edits, "
                   "and New-B/Linux3.6's dumpstack.c (read) has it: the change is in 4.6 .. 4.8, placed at 4.8"),
    Feature("cpu_task_line", since="3.10", source="lib/dump_stack.c dump_stack_print_info (3.10): 'CPU: %d PID: "
                                                  "%d Comm: %.20s' replaces 'Pid: %d, comm: %.20s'"),
    Feature("short_rip", since="4.10",
            source="arch/x86/kernel/process_64.c __show_regs: 'RIP: %04lx:[<%016lx>] ' then printk_address's ' [<%p>] "
                   "%pS' and 'RSP: %04lx:%016lx  EFLAGS: %08lx' (two blanks) in 3.4 (torvalds/linux 00194b2e, read), "
                   "4.8 (read, WindRiver-Labs/kernel-4.8.x) and 4.9 (v4.9.227's dumpstack.c, read in a merge, still "
                   "has printk_address); 'RIP: %04lx:%pS' and 'RSP: %04lx:%016lx EFLAGS: %08lx' (one blank) in a "
                   "4.10..4.14 process_64.c (read: intel_rdt, no PTI), with the dumpstack rework of 4.10"),
    Feature("short_eip", since="4.15", source="arch/x86/kernel/process_32.c __show_regs: 'EIP: %pS' (4.15)"),
    Feature("modules_after_regs", since="4.18",
            source="arch/x86/kernel/dumpstack.c __die: print_modules() before show_regs() in 2.6.2x-3.x, in "
                   "4.8 (read, WindRiver-Labs/kernel-4.8.x), in a 4.10..4.14 dumpstack.c (read: 'RIP: %pS RSP: "
                   "%016lx' summary, no PTI) and in a 4.15..4.17 one (read: ' PTI'/' NOPTI', cpu_entry_area); after "
                   "it in 4.18 (read, rule show_regs), in the real 4.19.0-rc3 oops, by 5.0 (read in the die_addr "
                   "patch: 'show_regs(regs); print_modules();') and in 5.10 (read: __die_body)"),
    Variant("show_opcodes", [("4.18", "bytes"), ("4.19", "ph"), ("5.10", "ph_unable")], before=None,
            source="arch/x86/kernel/dumpstack.c show_opcodes: 4.18 (read, the dumpstack.c of rule show_regs) "
                   "printk('%sCode: ') then OPCODE_BUFSIZE (64) bytes from ip - 64 * 2 / 3, '%02x ' each and "
                   "'<%02x> ' at ip, or pr_cont('Bad RIP value.') when probe_kernel_read fails; '%42ph <%02x> "
                   "%21ph' with PROLOGUE_SIZE/EPILOGUE_SIZE next (a show_opcodes(u8 *rip) of that form read), in "
                   "the 5.4 golden log and in 5.10 (read); the release that made it is not read: placed at 4.19. "
                   "'Code: Bad RIP value.' when the copy fails until Mark Mossberg's 'x86/dumpstack: Fix misleading "
                   "instruction pointer error message' (lkml 20201002042915, read: printk('%sCode: Unable to access "
                   "opcode bytes at RIP 0x%lx.\\n', loglvl, prologue)), in 5.10 (read)"),
    Feature("idle_comm_cpu", since="3.2",
            source="kernel/sched/core.c init_idle (4.4 .. 6.x read): '#ifdef CONFIG_SMP sprintf(idle->comm, "
                   "\"%s/%d\", INIT_TASK_COMM, cpu)' -- 'swapper/0' on SMP, INIT_TASK_COMM 'swapper' otherwise; "
                   "the rename is after 3.2-rc2 (an LKML boot log where pid 1 still inherits 'swapper') and in "
                   "Ubuntu's 3.2.0-23 ('Pid: 1, comm: swapper/0')"),
    Variant("show_regs", [("4.18", "show_ip")], before=None,
            source="4.18: a dumpstack.c with __die 'show_regs(regs); print_modules();', exec_summary_regs saved "
                   "by the first __die and printed by oops_end, show_ip printing 'RIP: %04x:%pS' then "
                   "show_opcodes(u8 *rip) (read: __show_regs(regs, all) with a bool, before the 4.19 show_regs_mode) "
                   "and WindRiver-Labs/linux-yocto-4.18's process_64.c (read: __show_regs starts with "
                   "show_iret_regs; i386's process_32.c of 4.18 is not read: its lines are 5.10's); "
                   "a real 4.19.0-rc3 oops (linux-mm, Sep 2018: 'Oops: 0000 [#1] SMP DEBUG_PAGEALLOC', 'CPU: 1 PID: "
                   "121 Comm: modprobe', 'RIP: 0010:exit_mmap+0x122/0x1f0', 'Code: ... <48> 8b 52 08 ...', 'RSP: "
                   "0018:ffffc90000897de0 EFLAGS: 00010246', 'RAX: ...', 'FS:  ...', 'CS:  0010 DS: 0000 ES: 0000 "
                   "CR0: ...') shows the layout; "
                   "arch/x86/kernel/dumpstack.c and process_32.c/process_64.c (5.10 read): show_regs -> "
                   "__show_regs -> show_iret_regs/show_ip ('RIP: %04x:%pS' or 'EIP: %pS', then show_opcodes "
                   "'Code: ' 42 bytes '<%02x>' 21 bytes, or 'Code: Unable to access opcode bytes at RIP "
                   "0x%lx.'), 'RSP: %04x:%016lx EFLAGS: %08lx', the general registers, 'FS:  ...', 'CS:  ...', "
                   "'CR2: ...' (x86_64) / 'EAX: ...' 'ESI: ...' 'DS: ... EFLAGS: %08lx' 'CR0: ...' (i386), "
                   "then show_trace_log_lvl 'Call Trace:' and one ' %s%pB' line per text address on the "
                   "stack ('? ' when no unwinder vouches for it); oops_end prints the first oops's registers "
                   "again after the end marker (exec_summary_regs). 3.10 .. 4.18: rule show_regs_dumpstack"),
    Variant("show_regs_dumpstack", [("3.1", "show_registers"), ("3.6", "show_regs_common"), ("3.10", "stack_dump"),
                                    ("4.10", "unwinder"), ("4.18", None)], before=None,
            source="'show_registers' (3.1 read, 303750856/linux-3.1 dumpstack_32.c, dumpstack_64.c, process.c, "
                   "process_32.c; 2.6.36's dumpstack.c, torvalds/linux 02ca752e, read, calls show_registers the same "
                   "way): __die -> show_registers; x86_64 prints 'CPU %d ' then print_modules, i386 print_modules; "
                   "then __show_regs, whose show_regs_common starts with printk(KERN_CONT \"\\n\") -- after "
                   "print_modules' newline an empty line (kernel/printk.c of the time, read: only a level prefix "
                   "other than KERN_CONT starts a new line) -- and prints 'Pid: %d, comm: %.20s %s %s %.*s' and ' %s %s'; "
                   "x86_64's __show_regs(regs, 1) prints the CR and DR lines, i386's __show_regs(regs, 0) stops "
                   "after ' DS: ...'; 'Process ...'; 'Stack:'; 'Code:' then ' %02x' each and '  Bad RIP value.' on "
                   "x86_64 too; 3.2 .. 3.5 not read: placed with 3.1; before 3.1 rule show_registers_64/_32. "
                   "'show_regs_common' (3.6 read, New-B/Linux3.6 dumpstack.c, dumpstack_32.c, dumpstack_64.c, "
                   "process.c): "
                   "__die -> print_modules, show_regs; x86_64's show_regs prints 'CPU %d ' then __show_regs, "
                   "whose show_regs_common (arch/x86/kernel/process.c) prints 'Pid: %d, comm: %.20s %s %s %.*s' "
                   "and ' %s %s' of the DMI vendor and product -- empty strings without DMI, so the line ends in "
                   "two blanks (3.6's one printk '... %.*s %s %s%s%s\\n', read) -- then "
                   "the registers of 3.4's process_64.c (torvalds/linux 00194b2e, read), 'Process %s (pid: %d, "
                   "threadinfo %p, task %p)' (i386: 'Process %.*s (pid: %d, ti=%p task=%p task.ti=%p)'), "
                   "'Stack:', the trace, 'Code: ' and the summary as 3.10 prints them. 3.1 (read, "
                   "303750856/linux-3.1: show_registers with print_modules after 'CPU %d ', x86_64's 'Code:' "
                   "with ' %02x' each) to 3.5 is rule 'show_registers'. "
                   "'stack_dump' (3.10): __die -> print_modules, show_regs (arch/x86/kernel/dumpstack_64.c / dumpstack_32.c): "
                   "show_regs_print_info (lib/dump_stack.c, 3.10), __show_regs(regs, 1), then for kernel mode: "
                   "'Stack:' and kstack_depth_to_print (3 * STACKSLOTS_PER_LINE) words, ' %016lx' four a line "
                   "(' %08lx' eight a line on i386), show_trace_log_lvl's 'Call Trace:' with ' [<%p>] %s%pB' per "
                   "text address on the stack, then 'Code: ' -- code_bytes 64 from ip - 64*43/64, '%02x ' each, "
                   "'<%02x> ' at ip, ' Bad RIP value.' (x86_64), 'Code:' ' %02x' ' <%02x>' '  Bad EIP value.' "
                   "(i386) -- and __die's summary 'RIP ' + printk_address ' [<%p>] %pS' + ' RSP <%016lx>' (x86_64) "
                   "or 'EIP: [<%08lx>] %s SS:ESP %04x:%08lx' (i386): 4.8 read (WindRiver-Labs/kernel-4.8.x "
                   "dumpstack.c, dumpstack_32.c, dumpstack_64.c, process_32.c, process_64.c), 4.9 the same "
                   "(v4.9.227 dumpstack.c read in a merge: kstack_depth_to_print, printk_stack_address ' [<%p>] "
                   "%s%pB', printk_address); 3.10..3.x not read in a tagged tree (a ~4.1 torvalds/linux "
                   "dumpstack_64.c, 01b944fe, read, prints the same). 'unwinder' (the dumpstack rework of 4.10): "
                   "no raw 'Stack:' dump, ' %s%pB' without the address, '<%s>' only for non-task stacks, summary "
                   "'RIP: %pS RSP: %016lx' / 'EIP: %pS SS:ESP: %04x:%08lx' (a 4.10..4.14 dumpstack.c read; a "
                   "4.15..4.17 one read, the same with show_regs moved into dumpstack.c); i386 4.15..4.17 (rule "
                   "short_eip): its process_32.c register lines after 'EIP: %pS' not read, placed as 5.10's"),
    Variant("printk_address", [("3.0", "pB"), ("3.13", "pS")], before="pS",
            source="printk_address is ' [<%016lx>] %s%pS' (traps_64.c 2.6.27, read) and ' [<%p>] %s%pS' "
                   "(dumpstack.c 2.6.32, read), ' [<%p>] %s%pB' in 3.0 (dumpstack.c read, " + _READ_30 + "): "
                   "the RIP line and __die's 'RIP ' summary of x86_64 and the trace of both arches (i386's 'EIP is "
                   "at' and its summary are print_symbol's, %pS-like); 2.6.33 .. 2.6.39 not read: %pB placed at "
                   "3.0, the first release read with it. "
                   "arch/x86/kernel/dumpstack.c printk_address, which prints __show_regs' long RIP line and "
                   "__die's 'RIP ' summary: ' [<%p>] %s%pB' in 3.6 (read; %pB looks the address up at address - 1, "
                   "so a RIP at a function's first byte names the symbol before it); ' [<%p>] %pS' with a separate "
                   "printk_stack_address '%pB' for the trace in 4.8 (read): Jiri Slaby's 'x86/dumpstack: Fix "
                   "printk_address for direct addresses', backported by SUSE to 3.11 in Dec 2013 (bnc#845621, "
                   "changelog read); its mainline release is not read: placed at 3.13"),
    Variant("task_ptr_line", [("3.10", "ti"), ("4.9", "stack"), ("4.15", None)], before=None,
            source="lib/dump_stack.c show_regs_print_info: 'task: %p ti: %p task.ti: %p' after dump_stack_print_info "
                   "(3.10, read in three trees); 'task: %p task.stack: %p' with THREAD_INFO_IN_TASK (4.9); the "
                   "function only calls dump_stack_print_info in 4.18 (read, WindRiver-Labs/linux-yocto-4.18); the "
                   "release between 4.15 and 4.18 that dropped the line is not read: placed at 4.15, the release "
                   "that hashed %p"),
    Feature("dr_if_not_default", since="3.16",
            source="arch/x86/kernel/process_64.c / process_32.c __show_regs: DR0..DR7 always printed in 3.4 "
                   "(torvalds/linux 00194b2e, read); 'Only print out debug registers if they are in their "
                   "non-default state' (d6 == DR6_RESERVED, d7 == 0x400) in 4.8 (read) and later; Dave Jones' "
                   "patch is dated 3.16 here, not read in a tagged tree"),
    Variant("show_registers_32", [("2.6.20", "classic"), ("2.6.24", "traps_32"), ("2.6.25", "traps_32_ip"),
                                  ("2.6.29", "dumpstack_32"), ("3.1", None)], before=None,
            source="arch/i386/kernel/traps.c show_registers (2.6.22 read, ut-osa/txos): print_modules, 'CPU:    %d', "
                   "'EIP:    %04x:[<%08lx>]    %s VLI', 'EFLAGS: %08lx   (%s %.*s)', 'EIP is at %s', 'eax: %08lx   "
                   "ebx: ...', 'esi: ...', 'ds: %04x   es: %04x   fs: %04x  gs: %04x  ss: %04x' (fs and gs from "
                   "Jeremy Fitzhardinge's 'Convert i386 PDA code to use %fs', Nov 2006, for 2.6.20: a real 2.6.19.2 "
                   "oops still prints 'ds: 007b   es: 007b   ss: 0068'), then the same Process/Stack/Call Trace/"
                   "Code/summary lines as 2.6.24; the same show_registers in 2.6.23 (read, linux-scraping/"
                   "linux-grsecurity db0edb92, Makefile 2.6.23); 2.6.21's not read, placed with 2.6.20 and 2.6.22; "
                   "arch/x86/kernel/traps_32.c show_registers and die(), process_32.c __show_registers (2.6.24 "
                   "read): print_modules, a blank line, 'Pid: %d, comm: %s %s (%s %.*s)', 'EIP: %04x:[<%08lx>] "
                   "EFLAGS: %08lx CPU: %d', 'EIP is at %s', 'EAX: ...', 'ESI: ...', ' DS: ... SS: %04x', "
                   "'Process %.*s (pid: %d, ti=%p task=%p task.ti=%p)', 'Stack: ' (kstack_depth_to_print 24 "
                   "words, 8 a line), 'Call Trace:' ' [<%08lx>] %s' per text address on the stack, ' "
                   "=======================', 'Code: ' (code_bytes 64 from eip - 43, '<%02x> ' at eip, ' Bad EIP "
                   "value.' at an unreadable byte), then 'EIP: [<%08lx>] %s SS:ESP %04x:%08lx'. "
                   "'traps_32_ip' (arch/x86/kernel/traps_32.c and process_32.c of 2.6.27 read, rmcc/gp_one_kernel "
                   "57d93f05, Makefile 2.6.27): the same lines, print_trace_address now '%s [<%08lx>] ' then '? ' for "
                   "an address no frame vouches for (the reliable flag of the 2.6.25 merge window: 2.6.25, 2.6.26 "
                   "and 2.6.28 not read, placed with 2.6.27; a dumpstack_32.c holding __die, of the same layout as "
                   "the x86_64 one of rule show_registers_64, id 2153457121, release not confirmed, prints the "
                   "dumpstack_32 lines with sysfs_printk_last_file). 'dumpstack_32' (arch/x86/kernel/dumpstack.c, "
                   "dumpstack_32.c, process_32.c of 2.6.32 read, leemgs/OptimusOneKernel-KandroidCommunity bb7be218): "
                   "__die prints 'last sysfs file: %s' (rule last_sysfs_file), show_registers print_modules, "
                   "__show_regs(regs, 0): printk('\\n'), 'Pid: %d, comm: %s %s (%s %.*s) %s' (the DMI product "
                   "name: '' here, so the line ends in a blank), the EIP/EAX/ESI/DS lines, 'Process ...', 'Stack:' "
                   "on its own line then ' %08lx' eight a line, 'Call Trace:' with printk_address ' [<%p>] %s%pS', "
                   "no '=====' line, 'Code: ' '%02x ' and the summary; the same lines in 3.0 (dumpstack_32.c, "
                   "process_32.c read, " + _READ_30 + "; its trace's printk_address %pB: rule "
                   "printk_address) and "
                   "no 'last sysfs file:' (rule last_sysfs_file); 2.6.29 .. 2.6.31 and 2.6.33 .. 2.6.39 not read: "
                   "placed with 2.6.32 and 3.0, the form of 3.1 (rule show_regs_dumpstack) after them"),
    Variant("show_registers_64", [("2.6.26", "traps_64"), ("2.6.29", "dumpstack_64"), ("3.1", None)], before=None,
            source="'traps_64' (arch/x86/kernel/traps_64.c show_registers/__die, process_64.c __show_regs of 2.6.27 "
                   "read, rmcc/gp_one_kernel 57d93f05, Makefile 2.6.27): 'CPU %d ' then __show_regs' printk('\\n') "
                   "(the line ends), print_modules, 'Pid: %d, comm: %.20s %s %s %.*s', 'RIP: %04lx:[<%016lx>] ' and "
                   "printk_address ' [<%016lx>] %s%pS', 'RSP: %04lx:%016lx  EFLAGS: %08lx', the registers and DR0..DR7 "
                   "always, 'Process %s (pid: %d, threadinfo %p, task %p)', 'Stack: ' then ' %016lx' four a line "
                   "(kstack_depth_to_print 12), '\\nCall Trace:\\n', printk_address per text address, "
                   "show_trace_log_lvl's printk('\\n') and show_registers' printk('\\n') (two empty lines), 'Code: ' "
                   "'%02x ' ('<%02x> ' at ip, ' Bad RIP value.'), __die's 'RIP ' printk_address ' RSP <%016lx>'; "
                   "2.6.26 the same (traps_64.c read in katadelos/linux-2.6.26-lab126 5386f5d9, Makefile 2.6.26, an "
                   "-rt tree whose show_trace adds only lock/preempt debugging hooks); 2.6.28 not read, placed with "
                   "2.6.27 (a dumpstack_64.c that still holds oops_begin and __die, the layout between the split "
                   "of traps_64.c and dumpstack.c, was read by content only -- code index id 2290515579, its "
                   "tree's release not confirmed: it prints '[#%d] ', sysfs_printk_last_file and 'Stack:' on its "
                   "own line, the dumpstack_64 form; if it is 2.6.28's, that form and rule last_sysfs_file begin "
                   "at 2.6.28). 'dumpstack_64' (dumpstack.c, dumpstack_64.c, "
                   "process_64.c of 2.6.32 read, leemgs/OptimusOneKernel-KandroidCommunity bb7be218): 'last sysfs "
                   "file: %s', 'CPU %d ', print_modules, 'Pid: ... %.*s %s' (the DMI product name: '', a trailing "
                   "blank), the same registers, 'Process ...', 'Stack:' on its own line, ' %016lx' four a line, "
                   "'Call Trace:' with ' [<%p>] %s%pS', 'Code: ' and the summary, no empty lines; 2.6.29 .. 2.6.31 "
                   "and 2.6.33 .. 2.6.39 not read: placed with 2.6.32 and 3.0, whose dumpstack_64.c and "
                   "process_64.c (read, " + _READ_30 + ") print the same lines -- 'CPU %d ', "
                   "print_modules, the long RIP line, DR0..DR7 always, 'Stack:' on its own line, 'Code: ' "
                   "'%02x ', ' Bad RIP value.' -- with printk_address %pB (rule printk_address) and no 'last sysfs file:' (rule last_sysfs_file); the form of 3.1 (rule "
                   "show_regs_dumpstack) after them"),
    Feature("show_regs_common", since="2.6.38",
            source="arch/x86/kernel/process.c show_regs_common() (2.6.38.7 read, OESF/linux-linaro-natty, Ubuntu "
                   "natty): printk(KERN_CONT \"\\n\"), 'Pid: %d, comm: %.20s %s %s %.*s', ' ' and '%s %s' of the "
                   "DMI vendor and product ('' here: the line ends in two blanks), shared by process_32.c and "
                   "process_64.c; 2.6.32's __show_regs prints its own line (i386 '... (%s %.*s) %s', x86_64 '... "
                   "%.*s %s', read). 2.6.33 .. 2.6.37 not read: placed at 2.6.38, the first release read with it; "
                   "3.0's process.c (read, " + _READ_30 + ") prints the same line, and ' %s %s' then "
                   "'/%s' only when "
                   "DMI has a board name (none here); the other lines of 2.6.38 .. 3.0 are 2.6.32's (3.0's "
                   "dumpstack_32.c/_64.c read; 2.6.38's and 2.6.39's not read)"),
    Variant("last_sysfs_file", [("2.6.29", True), ("3.0", False)], before=False,
            source="fs/sysfs/file.c sysfs_printk_last_file(): printk(KERN_EMERG \"last sysfs file: %s\\n\", "
                   "last_sysfs_file), called by dumpstack.c __die after the header (2.6.32 read); not called by the "
                   "__die of 2.6.27's traps_32.c/traps_64.c (read), nor of 3.0's dumpstack.c (read, " + _READ_30 + ": "
                   "<linux/sysfs.h> still included, no call) nor of 3.1's (read). No sysfs file is ever opened on "
                   "mmemu's machine: the name is empty. 2.6.28 .. 2.6.31 not read: placed with the dumpstack forms "
                   "(2.6.29); 2.6.33 .. 2.6.39 not read: the line is placed until 2.6.39, 3.0 being the first "
                   "release read without it"),
    Feature("task_stack_marker", since="5.16",
            source="arch/x86/kernel/dumpstack_64.c stack_type_name: 'if (type == STACK_TYPE_TASK) return "
                   "\"TASK\";' (Peter Zijlstra's stack guard patch, Sep 2021, merged for 5.16; a 5.17-rc7 "
                   "report and the 5.19 golden show ' <TASK>' ... ' </TASK>'); x86_64 only"),
    Variant("oops_id", [("2.6.24", "random"), ("5.17", "zero")], before=None,
            source="kernel/panic.c oops_exit (2.6.24 read): '---[ end trace %016llx ]---' of oops_id, a random "
                   "u64 (get_random_bytes once, late_initcall); 'panic: Remove oops_id.' (Sebastian Andrzej "
                   "Siewior, Dec 2021, in linux-next 20220113 via akpm, merged for 5.17) prints 0ULL; the 'else "
                   "oops_id++' of later 2.6/3.x releases (its first release not dated here) is not modelled: "
                   "every oops of a boot shows the boot's id"),
    Feature("cr2_line", since="2.6.26", source="arch/x86/kernel/dumpstack.c: 'CR2: %016lx' after the oops"),
    Feature("segfault_prot_for_kernel_address", since="3.0",
            source="arch/x86/mm/fault.c __bad_area_nosemaphore: a user access to a kernel address is "
                   "reported with X86_PF_PROT set"),
    Feature("segfault_code_line", since="4.18",
            source="arch/x86/mm/fault.c show_signal_msg: show_opcodes(regs, loglvl) after the segfault line "
                   "('x86/fault: Dump user opcode bytes on fatal faults', ba54d856a9d8, x86/dumpstack of the 4.18 "
                   "merge window, not read in a tagged tree; the 5.4 golden log shows the line; dumpstack.c's "
                   "copy_code reads the user side with copy_from_user_nmi, refusing ranges past TASK_SIZE_MAX, "
                   "5.10 read)"),
    Feature("segfault_likely_cpu", since="6.1", source="arch/x86/mm/fault.c show_signal_msg (6.1): "
                                                       "' likely on CPU %d (core %d, socket %d)'"),
)


def release(k) -> str:
    v = k.spec.kernel
    return f"{v.major}.{v.minor}.{v.patch}"


def _era(k):
    return OOPS(k.spec.kernel)


def _header(k) -> str:
    """The era's wording of the first lines (``header`` for x86_64, ``header_32`` for i386)."""
    era = _era(k)
    return era.header if k.paging.bits64 else era.header_32


def dump_pagetable(k, root: int, address: int) -> str:
    """The page-table line of the oops (dump_pagetable of the era)."""
    steps = k.pgtable.walk(root, address).steps
    era = _era(k)
    if k.paging.bits64:
        parts = []
        for s in steps:
            names = [s.level.name.upper()] + [f.upper() for f in s.level.folds]
            if not era.p4d:
                names = [n for n in names if n != "P4D"]
            for name in names:
                parts.append(f"{name} {s.raw:x}")
        # each printed level ends with a blank, except the PTE ("PTE %lx")
        return " ".join(parts) + ("" if steps[-1].level.name == "pte" else " ")
    # 2.6.26 and later (show_fault_oops -> dump_pagetable, arch/x86/mm/fault.c)
    pae = k.paging.levels[0].entry_size == 8
    width = 16 if pae else 8
    parts = []
    if pae:
        parts.append(f"*pdpt = {steps[0].raw:016x}")
        if k.pgtable.decode(0, steps[0].raw)[0] == 0:
            return " ".join(parts) + " "
    pde = steps[1] if pae and len(steps) > 1 else steps[0]
    parts.append(f"*pde = {pde.raw:0{width}x}")
    pte = steps[-1] if steps[-1].level.name == "pte" else None
    if pte is not None and _lowmem(k, pte.table >> 12):  # !low_pfn(): no kmap in an oops
        parts.append(f"*pte = {pte.raw:0{width}x}")
    return " ".join(parts) + " "


#: (unsigned long)~(PAGE_SIZE - 1): promoted to 64 bits for a PAE entry it clears NX and
#: every bit above 4 GiB
_PAGE_MASK_32 = 0xFFFFF000
_PAGE_PRESENT, _PAGE_PSE, _PAGE_NX = 1, 0x80, 1 << 63


def _lowmem(k, pfn: int) -> bool:
    """``pfn < max_low_pfn``: the frame is RAM the direct map covers."""
    zone = k.frames.zone_of(pfn)
    return zone is not None and zone.name != "HighMem"


def _word(k, pa: int, size: int) -> int | None:
    """What ``*(u32/u64 *)__va(pa)`` reads (None beyond RAM: the kernel would fault again)."""
    if not k.mem.is_ram(pa, size):
        return None
    return int.from_bytes(k.mem.read(pa, size), "little")


def dump_pagetable_32(k, root: int, address: int) -> list[str]:
    """The entries i386's do_page_fault prints before 2.6.26, read word by word through
    ``__va(read_cr3())`` as the kernel reads them (the pgd never goes through the generic
    walker there):

    - 2.6.12 .. 2.6.21 (arch/i386/mm/fault.c): ``((unsigned long *)__va(cr3))[address >> 22]``
      as ``*pde`` -- on a PAE kernel too, where that word is not an entry of the 4-entry
      pdpt -- and, without CONFIG_HIGHPTE, when bit 0 is set, ``*pte`` from the page it
      points to at ``(address & 0x003ff000) >> PAGE_SHIFT``;
    - 2.6.22 .. 2.6.25: ``*pdpt`` (PAE) then ``*pde`` from a present lowmem pdpt entry, and
      ``*pte`` from a present lowmem page table (2.6.24: not below a PSE pde)."""
    era = _era(k)
    parts: list[str] = []
    if not era.pdpt_line:
        page = _word(k, root + 4 * (address >> 22), 4)
        parts.append(f"*pde = {page:08x}")
        if page & 1 and not k.layout.config.get("CONFIG_HIGHPTE"):
            pte = _word(k, (page & _PAGE_MASK_32) + 4 * ((address & 0x003FF000) >> 12), 4)
            if pte is not None:
                parts.append(f"*pte = {pte:08x}")
        return parts
    size = k.paging.levels[0].entry_size
    page = _word(k, root + size * (address >> k.paging.levels[0].shift), size)  # [address >> PGDIR_SHIFT]
    if size == 8:
        parts.append(f"*pdpt = {page:016x}")
        if _lowmem(k, page >> 12) and page & _PAGE_PRESENT:
            page = _word(k, (page & _PAGE_MASK_32) + 8 * ((address >> 21) & 511), 8)
            if page is None:
                return parts
            parts.append(f"*pde = {page:016x}")
            page &= ~_PAGE_NX
    else:
        parts.append(f"*pde = {page:08x}")
    pse = era.pte_rule == "lowmem_nopse" and page & _PAGE_PSE
    if _lowmem(k, page >> 12) and page & _PAGE_PRESENT and not pse:
        pte = _word(k, (page & _PAGE_MASK_32) + size * ((address >> 12) & (4096 // size - 1)), size)
        if pte is not None:
            parts.append(f"*pte = {pte:0{2 * size}x}")
    return parts


def _ip(fault: Fault) -> int:
    return fault.ip if fault.ip is not None else 0


def _die_flags(k) -> list[str]:
    cfg = k.layout.config
    flags = []
    if cfg.get("CONFIG_PREEMPT"):
        flags.append("PREEMPT")
    if cfg.get("CONFIG_SMP", True):
        flags.append("SMP")
    if _era(k).nopti and cfg.get("CONFIG_PAGE_TABLE_ISOLATION"):
        # IS_ENABLED(CONFIG_PAGE_TABLE_ISOLATION) ? (boot_cpu_has(X86_FEATURE_PTI) ? " PTI" : " NOPTI")
        flags.append("PTI" if k.user_pgd(k.pgd) != k.pgd else "NOPTI")
    return flags


def die_header(k, what: str, err: int, counter: int) -> list[str]:
    """``__die``'s first line(s): ``Oops: 0002 [#1] SMP`` in the era's layout."""
    style = _era(k).die_header if k.paging.bits64 else _era(k).die_header_32
    flags = _die_flags(k)
    if style == "classic":
        if k.paging.bits64:
            return [f"{what}: {err & 0xFFFF:04x} [{counter}] " + "".join(f"{f} " for f in flags)]
        return [f"{what}: {err & 0xFFFF:04x} [#{counter}]"] + (["".join(f"{f} " for f in flags)] if flags else [])
    if style == "trailing":
        return [f"{what}: {err & 0xFFFF:04x} [#{counter}] " + "".join(f"{f} " for f in flags)]
    prefix = "Oops: " if _era(k).die_oops_prefix else ""
    return [f"{prefix}{what}: {err & 0xFFFF:04x} [#{counter}]" + "".join(f" {f}" for f in flags)]


def idle_comm(k, cpu: int) -> str:
    """The comm of the idle task (pid 0) of *cpu*: INIT_TASK_COMM, ``swapper/N`` on an SMP
    kernel of the releases whose init_idle names it so (rule ``idle_comm_cpu``)."""
    if _era(k).idle_comm_cpu and k.layout.config.get("CONFIG_SMP", True):
        return f"swapper/{cpu}"
    return "swapper"


def task_line(k, fault: Fault) -> str:
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else (idle_comm(k, fault.cpu), 0)
    if not _era(k).cpu_task_line:
        return f"Pid: {pid}, comm: {comm[:20]} {k.print_tainted()} {release(k)} #1"
    # lib/dump_stack.c dump_stack_print_info: "CPU: %d [UID: %u ]PID: %d Comm: %.20s %s%s %s %.*s"
    uid = "UID: 0 " if _era(k).task_line_uid else ""
    return f"CPU: {fault.cpu} {uid}PID: {pid} Comm: {comm[:20]} {k.print_tainted()} {release(k)} #1"


def symbol(k, ip: int) -> str:
    """%pS: ``hello_init+0x12/0x30 [hello]`` where kallsyms knows the address, else the
    address (``0x...``)."""
    return k.symbol_at(ip) or f"0x{ip:x}"


def ip_line(k, fault: Fault, regs: dict[str, int] | None = None) -> str:
    """The IP line(s) of __show_regs before the register dump mmemu models (rule
    ``show_regs``): from the CPU's registers when code faulted (*regs*), else from what an
    access through the API has -- no instruction, which the line says."""
    ip = regs["ip"] if regs is not None else _ip(fault)
    era = _era(k)
    sym = symbol(k, ip)
    # an access made through the API has no instruction: say so where the kernel would
    # name one
    api = "  (no instruction: an access made through mmemu's API)" if regs is None and fault.ip is None else ""
    cs = regs["cs"] if regs is not None else (0x10 if k.paging.bits64 else 0x60)
    if k.paging.bits64:
        if not era.short_rip:
            return f"RIP: {cs:04x}:[<{ip:016x}>]  [<{ip:016x}>] {sym}{api}"
        return f"RIP: {cs:04x}:{sym}{api}"
    if not era.short_eip:
        flags = regs["flags"] if regs is not None else 0x10246
        return f"EIP: {cs:04x}:[<{ip:08x}>] EFLAGS: {flags:08x} CPU: {fault.cpu}\nEIP is at {sym}{api}"
    return f"EIP: {sym}{api}"


def reason(fault: Fault) -> str:
    """show_fault_oops' decoding of the error code (5.2+)."""
    if not fault.code & X86_PF_PROT:
        return "not-present page"
    if fault.code & X86_PF_RSVD:
        return "reserved bit violation"
    if fault.code & X86_PF_PK:
        return "protection keys violation"
    return "permissions violation"


def oops_report(k, fault: Fault, die_counter: int, why: str = "") -> str:
    """The whole oops for *fault* (the die_counter-th one of this boot)."""
    era = _era(k)
    b64 = k.paging.bits64
    w = 16 if b64 else 8
    addr = fault.address
    err = fault.code
    regs = cpu_registers(k, fault)  # None for an access made through the API
    ip = regs["ip"] if regs is not None else _ip(fault)
    root = k.fault_pgd(fault)  # read_cr3() at the fault
    lines: list[str] = []
    if fault.instr and fault.protection and not fault.user and k.codec.nx:
        walk = k.pgtable.walk(k.fault_pgd(fault), addr)
        if walk.mapped and walk.nx:
            lines.append("kernel tried to execute NX-protected page - exploit attempt? (uid: 0)")
    header = _header(k)
    kind = "NULL pointer dereference" if addr < PAGE_SIZE else "paging request"
    dumped = False
    if header == "unable" and b64:
        lines.append(f"Unable to handle kernel {kind} at {addr:016x} RIP: ")
        lines.append(f"[<{ip:016x}>]")
    elif header in ("unable", "bug_printing_eip", "eip_line"):
        # arch/i386/mm/fault.c do_page_fault (2.6.12 .. 2.6.23), arch/x86/mm/fault_32.c (2.6.24, 2.6.25)
        bug = "Unable" if header == "unable" else "BUG: unable"
        lines.append(f"{bug} to handle kernel {kind} at virtual address {addr:08x}")
        entries = dump_pagetable_32(k, k.fault_pgd(fault), addr)
        if header == "eip_line":  # one line: "printing eip: %08lx " "*pde = %08lx " ... "\n"
            lines.append(f"printing {era.eip_word}: {ip:08x} " + "".join(f"{e} " for e in entries))
        else:  # " printing eip:\n" "%08lx\n", then one KERN_ALERT line per entry
            lines += [" printing eip:", f"{ip:08x}"] + entries
        dumped = True
    elif header == "bug_unable":
        lines.append(f"BUG: unable to handle kernel {kind} at {addr:0{w}x}")
        if era.ip_line == "long":
            lines.append(f"IP: [<{ip:0{w}x}>] {symbol(k, ip)}")
        elif era.ip_line == "short":
            lines.append(f"IP: {symbol(k, ip)}")
        if era.pf_error_line:
            tokens = [t for bit, t in ((X86_PF_PROT, "[PROT]"), (X86_PF_WRITE, "[WRITE]"), (X86_PF_USER, "[USER]"),
                                       (X86_PF_RSVD, "[RSVD]"), (X86_PF_INSTR, "[INSTR]"), (X86_PF_PK, "[PK]"))
                      if err & bit]
            lines.append(f"#PF error: {' '.join(tokens) if err else '[normal kernel read fault]'}")
    else:
        if addr < PAGE_SIZE and not fault.user:
            lines.append(f"BUG: kernel NULL pointer dereference, address: {addr:0{w}x}")
        else:
            lines.append(f"BUG: unable to handle page fault for address: {addr:0{w}x}")
        lines.append(f"#PF: {fault.describe()}")
        lines.append(f"#PF: error_code(0x{err:04x}) - {reason(fault)}")
    if not dumped:
        lines.append(dump_pagetable(k, k.fault_pgd(fault), addr))  # read_cr3() at the fault
    what = "Oops"
    if why == "Bad pagetable":
        proc = fault.process
        lines.append(f"{proc.comm if proc else 'swapper'}: Corrupted page table at address {addr:x}")
        what = "Bad pagetable"
    lines += die_header(k, what, err, die_counter)
    if era.last_sysfs_file:  # __die: sysfs_printk_last_file(); no sysfs file was ever opened
        lines.append("last sysfs file: ")
    if not b64 and era.show_registers_32 and regs is not None:  # die() -> show_registers (2.6.20 .. 3.0)
        lines += show_registers_32(k, fault, regs, root)
    elif b64 and era.show_registers_64 and regs is not None:  # __die -> show_registers (2.6.26 .. 3.0)
        lines += show_registers_64(k, fault, regs, root)
    elif era.show_regs_dumpstack and regs is not None:
        lines += show_regs_dumpstack(k, fault, regs, root)
    elif era.show_regs and regs is not None:  # __die_body: show_regs, then print_modules
        state = _oops_state(k)
        if "summary" not in state:  # __die_header: the first oops's regs, for oops_end
            k.journal.setitem(state, "summary", regs)
        lines.append(task_line(k, fault))  # (no "Hardware name:": the machine has no DMI tables)
        lines += show_regs(k, regs, root)
        lines += call_trace(k, regs, root)
        lines.append(k.modules_linked_in())
    else:
        if not era.modules_after_regs:
            lines.append(k.modules_linked_in())
        if era.cpu_task_line or b64:
            lines.append(task_line(k, fault))
        lines.append(ip_line(k, fault, regs))
        if era.modules_after_regs:
            lines.append(k.modules_linked_in())
    if era.cr2_line or b64:
        lines.append(f"CR2: {addr:016x}")
    if era.oops_id is not None:  # oops_exit -> print_oops_end_marker
        lines.append(f"---[ end trace {oops_id(k):016x} ]---")
    summary = _oops_state(k).get("summary")
    if era.show_regs and summary is not None:  # oops_end: __show_regs(&exec_summary_regs, SHOW_REGS_ALL)
        lines += show_regs(k, summary, root)
    return "\n".join(lines)


#: arch/x86/kernel/traps_32.c (2.6.24): kstack_depth_to_print, code_bytes; THREAD_SIZE (8 KiB)
_KSTACK_DEPTH, _CODE_BYTES, _THREAD_SIZE_32 = 24, 64, 8192


def show_registers_32(k, fault: Fault, r: dict[str, int], root: int) -> list[str]:
    """die()'s body on i386 (rule ``show_registers_32``): arch/i386/kernel/traps.c
    show_registers of 2.6.20 .. 2.6.23 (``classic``), arch/x86/kernel/traps_32.c
    show_registers with process_32.c __show_registers of 2.6.24 .. 2.6.28 (``traps_32``,
    ``traps_32_ip``: the trace marks ``? ``) or dumpstack_32.c's of 2.6.29 .. 3.0
    (``dumpstack_32``), from the emulated CPU's registers; ``ti`` is the thread_info at the
    base of the 8 KiB stack (current_thread_info(): esp & ~(THREAD_SIZE - 1)); mmemu has no
    task_struct, which the ``task=`` field says."""
    style = _era(k).show_registers_32
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else (idle_comm(k, fault.cpu), 0)
    ip, sp = r["ip"], r["sp"]
    ti = sp & ~(_THREAD_SIZE_32 - 1)
    cs, ds, es, fs = (r[n] & 0xFFFF for n in ("cs", "ds", "es", "fs"))
    if style == "classic":
        lines = [k.modules_linked_in(), f"CPU:    {fault.cpu}",
                 f"EIP:    {cs:04x}:[<{ip:08x}>]    {k.print_tainted()} VLI",
                 f"EFLAGS: {r['flags']:08x}   ({release(k)} #1)",
                 f"EIP is at {symbol(k, ip)}",
                 f"eax: {r['ax']:08x}   ebx: {r['bx']:08x}   ecx: {r['cx']:08x}   edx: {r['dx']:08x}",
                 f"esi: {r['si']:08x}   edi: {r['di']:08x}   ebp: {r['bp']:08x}   esp: {sp:08x}",
                 f"ds: {ds:04x}   es: {es:04x}   fs: {fs:04x}  gs: {r['gs']:04x}  ss: {r['ss']:04x}"]
    else:
        board = " " if style == "dumpstack_32" else ""  # ' %s' of DMI_PRODUCT_NAME: "" here
        pid_line = f"Pid: {pid}, comm: {comm} {k.print_tainted()} ({release(k)} #1){board}"
        if _era(k).show_regs_common:  # ' ' then '%s %s' of the DMI vendor and product
            pid_line = task_line(k, fault) + "  "
        lines = [k.modules_linked_in(), "", pid_line,  # print_modules; __show_registers' printk("\n")
                 f"EIP: {cs:04x}:[<{ip:08x}>] EFLAGS: {r['flags']:08x} CPU: {fault.cpu}",
                 f"EIP is at {symbol(k, ip)}",
                 f"EAX: {r['ax']:08x} EBX: {r['bx']:08x} ECX: {r['cx']:08x} EDX: {r['dx']:08x}",
                 f"ESI: {r['si']:08x} EDI: {r['di']:08x} EBP: {r['bp']:08x} ESP: {sp:08x}",
                 f" DS: {ds:04x} ES: {es:04x} FS: {fs:04x} GS: {r['gs']:04x} SS: {r['ss']:04x}"]
    lines.append(f"Process {comm} (pid: {pid}, ti={ti:08x} task=(no task_struct in mmemu) task.ti={ti:08x})")
    words = stack_words(k, r, root, _KSTACK_DEPTH)
    if style == "dumpstack_32":  # "Stack:\n", then " %08lx" eight a line
        lines += ["Stack:"] + ["".join(f" {w:08x}" for w in words[i:i + 8]) for i in range(0, len(words), 8)]
    else:  # "Stack: " then "%08lx " eight a line, continued after "\n       "
        rows = [" ".join(f"{w:08x}" for w in words[i:i + 8]) + " " for i in range(0, len(words), 8)] or [""]
        lines += ["Stack: " + rows[0]] + ["       " + row for row in rows[1:]]
    lines.append("Call Trace:")
    fuzzy = "" if style in ("classic", "traps_32") else "? "  # no frame chain vouches for an address
    lines += [f" [<{addr:08x}>] {fuzzy}{sym}" for addr, sym in stack_text_addresses(k, r, root)]  # printk_address
    if style != "dumpstack_32":
        lines.append(" =======================")
    lines.append(code_bytes_line(k, ip, root, "EIP"))
    lines.append(f"EIP: [<{ip:08x}>] {symbol(k, ip)} SS:ESP {r['ss']:04x}:{sp:08x}")  # die()'s summary
    return lines


def stack_text_addresses(k, r: dict[str, int], root: int) -> list[tuple[int, str]]:
    """The words of the kernel stack, from the stack pointer to its top, that are text
    addresses kallsyms knows (__kernel_text_address), with the symbol printk_address prints
    for them (rule ``printk_address``: %pS, %pB from 3.0): the entries print_context_stack
    hands to print_trace_address in the traps/dumpstack forms before 3.1."""
    word = 8 if k.paging.bits64 else 4
    sp = r["sp"]
    top = stack_top(k, sp) or sp
    scan = read_nofault(k, root, sp, max(0, min(top - sp, 1 << 16))) or b""
    found = []
    for i in range(0, len(scan) - word + 1, word):
        addr = int.from_bytes(scan[i:i + word], "little")
        sym = k.symbol_at(addr)
        if sym is not None:
            found.append((addr, rip_symbol(k, addr)))
    return found


#: arch/x86/kernel/traps_64.c (2.6.27): kstack_depth_to_print
_KSTACK_DEPTH_64 = 12


def show_registers_64(k, fault: Fault, r: dict[str, int], root: int) -> list[str]:
    """__die's body on x86_64 before 3.1 (rule ``show_registers_64``): show_registers of
    traps_64.c (2.6.26 .. 2.6.28, ``traps_64``) or dumpstack_64.c (2.6.29 .. 3.0,
    ``dumpstack_64``) and process_64.c's __show_regs, from the emulated CPU's registers,
    then __die's executive summary."""
    style = _era(k).show_registers_64
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else (idle_comm(k, fault.cpu), 0)
    ip, sp = r["ip"], r["sp"]
    board = " " if style == "dumpstack_64" else ""  # ' %s' of DMI_PRODUCT_NAME: "" here
    if _era(k).show_regs_common:  # ' ' then '%s %s' of the DMI vendor and product
        board = "  "
    # "CPU %d " ended by __show_regs' printk("\n"), then print_modules
    lines = [f"CPU {fault.cpu} ", k.modules_linked_in(), task_line(k, fault) + board,
             f"RIP: {r['cs']:04x}:[<{ip:016x}>]  [<{ip:016x}>] {rip_symbol(k, ip)}",  # printk_address
             f"RSP: {r['ss']:04x}:{sp:016x}  EFLAGS: {r['flags']:08x}"]
    lines += gprs_and_control_64(r) + _debug_registers(k, r, always=True) + [process_line(k, fault, r)]
    words = stack_words(k, r, root, _KSTACK_DEPTH_64)
    rows = ["".join(f" {w:016x}" for w in words[i:i + 4]) for i in range(0, len(words), 4)]
    if style == "traps_64":  # printk("Stack: ") then the words; "\nCall Trace:\n" ends the last row
        lines += ["Stack: " + (rows[0] if rows else "")] + rows[1:]
    else:  # "Stack:\n", the rows, printk("\n")
        lines += ["Stack:"] + rows
    lines.append("Call Trace:")
    lines += [f" [<{addr:016x}>] ? {sym}" for addr, sym in stack_text_addresses(k, r, root)]
    if style == "traps_64":  # show_trace_log_lvl's printk("\n"), then show_registers' printk("\n")
        lines += ["", ""]
    lines.append(code_bytes_line(k, ip, root, "RIP"))
    return lines + [f"RIP  [<{ip:016x}>] {rip_symbol(k, ip)}", f" RSP <{sp:016x}>"]  # __die: printk_address


#: asm/stacktrace.h STACKSLOTS_PER_LINE (x86_64 4, i386 8); dumpstack.c kstack_depth_to_print
#: = 3 * STACKSLOTS_PER_LINE (3.10 .. 4.9)
_STACKSLOTS_64, _STACKSLOTS_32 = 4, 8


def task_pointer_line(k, r: dict[str, int]) -> list[str]:
    """show_regs_print_info's second line (rule ``task_ptr_line``): ``task: %p ti: %p
    task.ti: %p`` (3.10) or ``task: %p task.stack: %p`` (4.9). ``ti`` and ``task.stack`` are
    the base of the kernel stack the CPU runs on (current_thread_info() and task->stack are
    the stack's lowest address in those releases); mmemu has no task_struct, so ``task`` is a
    NULL pointer, printed as lib/vsprintf.c pointer() prints one: ``(null)`` right-aligned
    to a pointer's width."""
    style = _era(k).task_ptr_line
    if style is None:
        return []
    w = 16 if k.paging.bits64 else 8
    base, task = _stack_base(k, r), "(null)".rjust(w)
    if style == "ti":
        return [f"task: {task} ti: {base:0{w}x} task.ti: {base:0{w}x}"]
    return [f"task: {task} task.stack: {base:0{w}x}"]


def rip_symbol(k, ip: int) -> str:
    """printk_address's symbol (rule ``printk_address``): %pS, or 3.0 .. 3.12 %pB -- the
    symbol of ip - 1 with the offset of ip, the raw address where none covers it."""
    if _era(k).printk_address == "pS":
        return symbol(k, ip)
    return backtrace_symbol(k, ip) or f"0x{ip:x}"


def process_line(k, fault: Fault, r: dict[str, int]) -> str:
    """show_regs' task line before 3.10 (3.6 read): x86_64 'Process %s (pid: %d, threadinfo
    %p, task %p)', i386 'Process %.*s (pid: %d, ti=%p task=%p task.ti=%p)'; the pointers as
    task_pointer_line gives them (the stack's base; NULL for the task_struct mmemu has not)."""
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else (idle_comm(k, fault.cpu), 0)
    base, task = _stack_base(k, r), "(null)".rjust(16 if k.paging.bits64 else 8)
    if k.paging.bits64:
        return f"Process {comm} (pid: {pid}, threadinfo {base:016x}, task {task})"
    return f"Process {comm[:16]} (pid: {pid}, ti={base:08x} task={task} task.ti={base:08x})"


def _stack_base(k, r: dict[str, int]) -> int:
    """The lowest address of the kernel stack the CPU runs on: current_thread_info() and
    task->stack of the releases that print them."""
    from .cpu_adapter import KERNEL_STACK_ORDER  # registers exist: code ran, Unicorn is loaded

    size = PAGE_SIZE << KERNEL_STACK_ORDER
    top = stack_top(k, r["sp"])
    return top - size if top is not None else r["sp"] & ~(size - 1)


def _debug_registers(k, r: dict[str, int], always: bool) -> list[str]:
    """__show_regs' DR lines: always before rule ``dr_if_not_default``, else only when a
    debug register differs from its reset value."""
    if not always and (r["dr0"], r["dr1"], r["dr2"], r["dr3"], r["dr6"], r["dr7"]) == (
            0, 0, 0, 0, _DR6_RESERVED, _DR7_DEFAULT):
        return []
    if k.paging.bits64:
        return [f"DR0: {r['dr0']:016x} DR1: {r['dr1']:016x} DR2: {r['dr2']:016x}",
                f"DR3: {r['dr3']:016x} DR6: {r['dr6']:016x} DR7: {r['dr7']:016x}"]
    return [f"DR0: {r['dr0']:08x} DR1: {r['dr1']:08x} DR2: {r['dr2']:08x} DR3: {r['dr3']:08x}",
            f"DR6: {r['dr6']:08x} DR7: {r['dr7']:08x}"]


def show_regs_dumpstack(k, fault: Fault, r: dict[str, int], root: int) -> list[str]:
    """__die's body of 3.1 .. 4.18 (rule ``show_regs_dumpstack``), from the emulated CPU's
    registers: the modules and the task lines of the era, __show_regs, the raw ``Stack:``
    dump (until 4.9), the call trace, the ``Code:`` bytes, then __die's executive summary."""
    style = _era(k).show_regs_dumpstack
    return (_dumpstack_task_lines(k, fault, r, style) + _dumpstack_registers(k, fault, r, style)
            + _dumpstack_stack_and_code(k, fault, r, root, style))


def _dumpstack_task_lines(k, fault: Fault, r: dict[str, int], style: str) -> list[str]:
    """print_modules and the task lines: show_registers/show_regs' ``CPU %d `` (x86_64, until
    3.9) and show_regs_common's ``Pid:`` line, or from 3.10 show_regs_print_info's."""
    cpu_line = [f"CPU {fault.cpu} "] if k.paging.bits64 else []
    if style == "show_registers":  # show_regs_common's KERN_CONT "\n" after print_modules: an empty line
        lines = cpu_line + [k.modules_linked_in(), ""]
    elif style == "show_regs_common":
        lines = [k.modules_linked_in()] + cpu_line
    else:  # (no "Hardware name:": the machine has no DMI)
        return [k.modules_linked_in(), task_line(k, fault)] + task_pointer_line(k, r)
    return lines + [task_line(k, fault) + "  "]  # show_regs_common: the DMI vendor and product are ""


def _dumpstack_registers(k, fault: Fault, r: dict[str, int], style: str) -> list[str]:
    """__show_regs (process_64.c: the RIP line long until 4.9, ``RSP: ...  EFLAGS`` with two
    blanks until 4.9; ORIG_RAX is -1 outside a system call, so 4.10's `` ORIG_RAX:`` is not
    printed; process_32.c as 4.8 has it), then show_registers' ``Process`` line until 3.9."""
    era = _era(k)
    ip, sp = r["ip"], r["sp"]
    if k.paging.bits64:
        if era.short_rip:  # show_iret_regs
            lines = [f"RIP: {r['cs']:04x}:{symbol(k, ip)}", f"RSP: {r['ss']:04x}:{sp:016x} EFLAGS: {r['flags']:08x}"]
        else:  # "RIP: %04lx:[<%016lx>] " then printk_address " [<%p>] %pS\n" (%pB before 3.13)
            lines = [f"RIP: {r['cs']:04x}:[<{ip:016x}>]  [<{ip:016x}>] {rip_symbol(k, ip)}",
                     f"RSP: {r['ss']:04x}:{sp:016x}  EFLAGS: {r['flags']:08x}"]
        lines += gprs_and_control_64(r)
    elif era.short_eip:  # 4.15 .. 4.17: 5.10's lines without show_ip's Code (placed: see _I386_415)
        return i386_regs_short_eip(k, r)
    else:
        lines = [f"EIP: {r['cs']:04x}:[<{ip:08x}>] EFLAGS: {r['flags']:08x} CPU: {fault.cpu}",
                 f"EIP is at {symbol(k, ip)}",
                 f"EAX: {r['ax']:08x} EBX: {r['bx']:08x} ECX: {r['cx']:08x} EDX: {r['dx']:08x}",
                 f"ESI: {r['si']:08x} EDI: {r['di']:08x} EBP: {r['bp']:08x} ESP: {sp:08x}",
                 f" DS: {r['ds'] & 0xFFFF:04x} ES: {r['es'] & 0xFFFF:04x} FS: {r['fs'] & 0xFFFF:04x} "
                 f"GS: {r['gs'] & 0xFFFF:04x} SS: {r['ss'] & 0xFFFF:04x}"]
        if style != "show_registers":  # i386's show_registers: __show_regs(regs, 0) stops at DS
            lines.append(f"CR0: {r['cr0']:08x} CR2: {r['cr2']:08x} CR3: {r['cr3']:08x} CR4: {r['cr4']:08x}")
    if k.paging.bits64 or style != "show_registers":
        lines += _debug_registers(k, r, always=not era.dr_if_not_default)
    if style in ("show_registers", "show_regs_common"):
        lines.append(process_line(k, fault, r))
    return lines


def _dumpstack_stack_and_code(k, fault: Fault, r: dict[str, int], root: int, style: str) -> list[str]:
    """show_stack_log_lvl's ``Stack:`` words (until 4.9: `` %016lx`` each, STACKSLOTS_PER_LINE
    a line), the call trace, show_regs' ``Code:`` and __die's summary."""
    b64 = k.paging.bits64
    ip, sp = r["ip"], r["sp"]
    stack_dump = style != "unwinder"
    lines = []
    if stack_dump:
        slots = _STACKSLOTS_64 if b64 else _STACKSLOTS_32
        words = stack_words(k, r, root, 3 * slots)
        lines.append("Stack:")
        lines += ["".join(f" {w:0{16 if b64 else 8}x}" for w in words[i:i + slots]) for i in range(0, len(words), slots)]
    lines += call_trace(k, r, root, addresses=stack_dump)
    lines.append(code_bytes_line(k, ip, root, "RIP" if b64 else "EIP", leading=not b64 or style == "show_registers"))
    if b64 and stack_dump:  # "RIP " + printk_address + " RSP <%016lx>"
        return lines + [f"RIP  [<{ip:016x}>] {rip_symbol(k, ip)}", f" RSP <{sp:016x}>"]
    if b64:
        return lines + [f"RIP: {symbol(k, ip)} RSP: {sp:016x}"]
    if stack_dump:  # "EIP: [<%08lx>] " + print_symbol("%s") + " SS:ESP %04x:%08lx"
        return lines + [f"EIP: [<{ip:08x}>] {symbol(k, ip)} SS:ESP {r['ss'] & 0xFFFF:04x}:{sp:08x}"]
    return lines + [f"EIP: {symbol(k, ip)} SS:ESP: {r['ss'] & 0xFFFF:04x}:{sp:08x}"]


def stack_top(k, sp: int) -> int | None:
    """The top of the kernel stack *sp* is on (the CPU's stack mmemu allocated), or None."""
    return next((c.adapter.stack_top for c in k.cpus if getattr(c.adapter, "stack_top", 0) > sp), None)


def stack_words(k, r: dict[str, int], root: int, depth: int) -> list[int]:
    """show_stack_log_lvl's words: up to *depth* (kstack_depth_to_print) words from the stack
    pointer, stopping at the top of the stack (kstack_end)."""
    word = 8 if k.paging.bits64 else 4
    sp = r["sp"]
    n = max(0, min(depth, ((stack_top(k, sp) or sp) - sp) // word))
    data = read_nofault(k, root, sp, word * n) or b""
    return [int.from_bytes(data[i:i + word], "little") for i in range(0, len(data), word)]


def code_bytes_line(k, ip: int, root: int, reg: str, leading: bool = False) -> str:
    """The ``Code:`` line of show_registers/show_regs before show_opcodes: code_bytes (64)
    bytes from ip - code_bytes * 43 / 64, or from ip when that start is below PAGE_OFFSET or
    unreadable, the byte at ip in ``<>``, `` Bad RIP value.`` (``Bad EIP value.``) at the
    first unreadable byte. *leading*: i386's dumpstack_32.c form from 3.x, ``Code:`` then
    `` %02x`` each and ``  Bad EIP value.``; else ``Code: `` then ``%02x `` each."""
    mask = (1 << (64 if k.paging.bits64 else 32)) - 1
    prologue = _CODE_BYTES * 43 // 64
    start, length = (ip - prologue) & mask, _CODE_BYTES
    page_offset = k.layout["PAGE_OFFSET"]
    if start < page_offset or read_nofault(k, root, start, 1) is None:  # try starting at IP
        start, length = ip, _CODE_BYTES - prologue + 1
    code = "Code:" if leading else "Code: "
    for a in range(start, start + length):
        byte = read_nofault(k, root, a, 1) if a >= page_offset else None
        if byte is None:
            code += f"{' ' if leading else ''} Bad {reg} value."
            break
        cell = f"<{byte[0]:02x}>" if a == ip else f"{byte[0]:02x}"
        code += f" {cell}" if leading else f"{cell} "
    return code


def _oops_state(k) -> dict:
    """What the oops path keeps between oopses of one boot (journaled like the rest)."""
    return k.__dict__.setdefault("_x86_oops_state", {})


def oops_id(k) -> int:
    """kernel/panic.c's oops_id: 0 from 5.17; before, a random u64 drawn once per boot
    (get_random_bytes), here drawn from the machine's description so that a boot's id is
    the same every time it is made again."""
    if _era(k).oops_id == "zero":
        return 0
    return random.Random(f"oops_id {k.spec!r}").getrandbits(64)


def cpu_registers(k, fault: Fault) -> dict[str, int] | None:
    """The registers of the CPU whose code faulted (read in its interrupt hook), or of the
    CPU inside an exported kernel function whose implementation made the faulting access
    (its ip is that function's entry), or None: an access made through the API has none."""
    for cpu in k.cpus:
        if not cpu.running or (fault.source == "cpu" and cpu.index != fault.cpu):
            continue
        regs = cpu.adapter.registers()
        if not regs:
            return None
        if fault.source == "cpu":
            regs["ip"], regs["sp"] = fault.ip, fault.sp
            return regs
        at = (regs["ip"] - 1) & ((1 << (64 if k.paging.bits64 else 32)) - 1)
        if at in k.kcall_addresses:  # stopped at the trap (int3) of a kernel function
            regs["ip"] = at
            regs["cr2"] = fault.address  # the function's own access is what faulted
            return regs
    return None


def read_nofault(k, root: int, va: int, n: int) -> bytes | None:
    """``copy_from_kernel_nofault``: *n* bytes at *va* through the tables at *root*, or None
    if a page of them is not mapped (no fault is taken)."""
    out = bytearray()
    if n > 0 and not (k.paging.is_valid(va) and k.paging.is_valid(va + n - 1)):
        return None  # wraps past the top, or a non-canonical address: the copy faults
    while n > 0:
        walk = k.pgtable.walk(root, va)
        if not walk.mapped:
            return None
        take = min(n, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
        out += k.mem.read(walk.phys, take)
        va, n = va + take, n - take
    return bytes(out)


#: arch/x86/kernel/dumpstack.c show_opcodes: PROLOGUE_SIZE, EPILOGUE_SIZE (5.10)
PROLOGUE_SIZE, EPILOGUE_SIZE = 42, 21


def code_line(k, ip: int, root: int, user: bool = False) -> str:
    """show_opcodes: ``Code: `` the 42 bytes before ip, ``<%02x>`` the byte at ip, the 21
    after (``%ph``: two hex digits each, blank-separated; 4.18: ``%02x `` each, rule
    ``show_opcodes``), read as scripts/decodecode reads them back; ``Code: Unable to access opcode bytes at RIP 0x%lx.`` (the prologue's
    address) when a page of them is not mapped. *user*: copy_code's user side, which also
    refuses a range reaching past TASK_SIZE_MAX."""
    mask = (1 << (64 if k.paging.bits64 else 32)) - 1
    prologue = (ip - PROLOGUE_SIZE) & mask
    size = PROLOGUE_SIZE + 1 + EPILOGUE_SIZE
    if _era(k).show_opcodes == "bytes":  # 4.18: '%02x ' each, the same 64 bytes
        data = read_nofault(k, root, prologue, size)
        if data is None:
            return "Code: Bad RIP value."
        return "Code: " + "".join(f"<{b:02x}> " if i == PROLOGUE_SIZE else f"{b:02x} " for i, b in enumerate(data))
    data = None if user and prologue + size > k.task_size else read_nofault(k, root, prologue, size)
    if data is None and _era(k).show_opcodes == "ph":
        return "Code: Bad RIP value."
    if data is None:
        return f"Code: Unable to access opcode bytes at RIP 0x{prologue:x}."
    return (f"Code: {data[:PROLOGUE_SIZE].hex(' ')} <{data[PROLOGUE_SIZE]:02x}> "
            f"{data[PROLOGUE_SIZE + 1:].hex(' ')}")


#: DR6_RESERVED and DR7's reset value: __show_regs prints the debug registers only when
#: they differ from these (process_32.c/process_64.c, 5.10)
_DR6_RESERVED, _DR7_DEFAULT = 0xFFFF0FF0, 0x400
#: process_64.c __show_regs: the general registers, three a line
_GPR_LINES_64 = ((("RAX", "ax"), ("RBX", "bx"), ("RCX", "cx")), (("RDX", "dx"), ("RSI", "si"), ("RDI", "di")),
                 (("RBP", "bp"), ("R08", "r8"), ("R09", "r9")), (("R10", "r10"), ("R11", "r11"), ("R12", "r12")),
                 (("R13", "r13"), ("R14", "r14"), ("R15", "r15")))


def gprs_and_control_64(r: dict[str, int]) -> list[str]:
    """process_64.c __show_regs after the RSP line, the same from 3.x to 6.x: the general
    registers three a line, 'FS:  %016lx(%04x) GS:%016lx(%04x) knlGS:%016lx', 'CS:  %04x DS:
    %04x ES: %04x CR0: %016lx', 'CR2: %016lx CR3: %016lx CR4: %016lx'."""
    return ([" ".join(f"{label}: {r[name]:016x}" for label, name in row) for row in _GPR_LINES_64]
            + [f"FS:  {r['fs_base']:016x}({r['fs']:04x}) GS:{r['gs_base']:016x}({r['gs']:04x}) "
               f"knlGS:{r['kernel_gs_base']:016x}",
               f"CS:  {r['cs']:04x} DS: {r['ds']:04x} ES: {r['es']:04x} CR0: {r['cr0']:016x}",
               f"CR2: {r['cr2']:016x} CR3: {r['cr3']:016x} CR4: {r['cr4']:016x}"])


def show_regs(k, r: dict[str, int], root: int) -> list[str]:
    """__show_regs(regs, SHOW_REGS_ALL) of 5.10 (process_64.c / process_32.c), from the
    emulated CPU's registers."""
    if k.paging.bits64:
        lines = [f"RIP: {r['cs']:04x}:{symbol(k, r['ip'])}", code_line(k, r["ip"], root),
                 f"RSP: {r['ss']:04x}:{r['sp']:016x} EFLAGS: {r['flags']:08x}"]  # orig_ax -1: no ORIG_RAX
        lines += gprs_and_control_64(r)
    else:
        eip = i386_regs_short_eip(k, r)
        return eip[:1] + [code_line(k, r["ip"], root)] + eip[1:]  # show_ip: EIP, then show_opcodes
    lines += _debug_registers(k, r, always=False)
    # ("PKRU: %08x" follows when CR4.OSPKE is set: the emulated CPU never sets it)
    return lines


def i386_regs_short_eip(k, r: dict[str, int]) -> list[str]:
    """process_32.c __show_regs from the ``EIP: %pS`` of 4.15 (rule short_eip): read in 5.10,
    where show_ip prints the EIP line and the Code bytes (show_regs adds those after the EIP
    line). 4.15 .. 4.17's process_32.c was not found in any stored tree: its lines after
    ``EIP: %pS`` are placed as 5.10's (EFLAGS moved off the EIP line into the segment line,
    which the 4.15 change of the EIP line implies), and the Code bytes come from the
    4.15 .. 4.17 dumpstack.c's show_regs after the trace, as before 4.18's show_opcodes."""
    lines = [f"EIP: {symbol(k, r['ip'])}",
             f"EAX: {r['ax']:08x} EBX: {r['bx']:08x} ECX: {r['cx']:08x} EDX: {r['dx']:08x}",
             f"ESI: {r['si']:08x} EDI: {r['di']:08x} EBP: {r['bp']:08x} ESP: {r['sp']:08x}",
             f"DS: {r['ds']:04x} ES: {r['es']:04x} FS: {r['fs']:04x} GS: {r['gs']:04x} SS: {r['ss']:04x} "
             f"EFLAGS: {r['flags']:08x}",
             f"CR0: {r['cr0']:08x} CR2: {r['cr2']:08x} CR3: {r['cr3']:08x} CR4: {r['cr4']:08x}"]
    return lines + _debug_registers(k, r, always=False)


def backtrace_symbol(k, address: int) -> str | None:
    """%pB: the symbol of a return address, looked up at address - 1 (a call that ends a
    function returns past it) and printed with the return address's own offset."""
    sym = k.symbol_at(address - 1)
    if sym is None:
        return None
    name, rest = sym.split("+", 1)
    off, tail = rest.split("/", 1)
    return f"{name}+{int(off, 16) + 1:#x}/{tail}"


def call_trace(k, r: dict[str, int], root: int, addresses: bool = False) -> list[str]:
    """show_trace_log_lvl: ``Call Trace:``, then each word of the kernel stack, from the
    stack pointer to the top of the stack, that is the address of code kallsyms knows (the
    loaded modules' functions, the exported kernel functions), as ``%pB``. mmemu runs no
    unwinder, so every one is marked ``? `` as the kernel marks the addresses its unwinder
    did not vouch for; x86_64 from 5.16 brackets the task stack with <TASK> </TASK>.
    *addresses*: printk_stack_address before 4.10, ``' [<%p>] %s%pB'``."""
    lines = ["Call Trace:"]
    marker = k.paging.bits64 and _era(k).task_stack_marker
    if marker:
        lines.append(" <TASK>")
    word = 8 if k.paging.bits64 else 4
    top = stack_top(k, r["sp"])
    if top is not None and top - r["sp"] <= 1 << 16:
        stack = read_nofault(k, root, r["sp"], top - r["sp"]) or b""
        for i in range(0, len(stack) - word + 1, word):
            addr = int.from_bytes(stack[i:i + word], "little")
            sym = backtrace_symbol(k, addr)
            if sym is not None:
                lines.append(f" [<{addr:0{2 * word}x}>] ? {sym}" if addresses else f" ? {sym}")
    if marker:
        lines.append(" </TASK>")
    return lines


def segfault_line(k, fault: Fault) -> str:
    """``show_signal_msg`` (``do_page_fault`` before 2.6.28): the line a user SIGSEGV leaves
    in the log, in the era's format (rules ``segfault_32``/``segfault_64``); an i386 kernel
    before 2.6.23 logs none: the report is empty, which the fault path logs as nothing."""
    proc = fault.process
    comm, pid = (proc.comm, proc.pid) if proc is not None else ("swapper", 0)
    era = _era(k)
    err = fault.code
    sp = fault.sp
    if era.segfault_prot_for_kernel_address and fault.address >= k.task_size:
        err |= X86_PF_PROT  # a user access to a kernel address is reported as a protection fault
    ip, addr = _ip(fault), fault.address
    w = 16 if k.paging.bits64 else 8
    style = era.segfault_64 if k.paging.bits64 else era.segfault_32
    head = f"{comm}[{pid}]: segfault at"
    if style is None:
        return ""  # bad_area_nosemaphore sends the signal and prints nothing
    if style == "rip_016lx":  # "segfault at %016lx rip %016lx rsp %016lx error %lx"
        return f"{head} {addr:016x} rip {ip:016x} rsp {sp:016x} error {err:x}"
    if style == "rip_lx":  # "segfault at %lx rip %lx rsp %lx error %lx"
        return f"{head} {addr:x} rip {ip:x} rsp {sp:x} error {err:x}"
    if style == "eip":  # "segfault at %08lx eip %08lx esp %08lx error %lx"
        return f"{head} {addr:08x} eip {ip:08x} esp {sp:08x} error {err:x}"
    if style == "ip_lx":  # "segfault at %lx ip %lx sp %lx error %lx"
        return f"{head} {addr:x} ip {ip:x} sp {sp:x} error {err:x}"
    if style == "ip_08lx":  # "segfault at %lx ip %08lx sp %08lx error %lx"
        return f"{head} {addr:x} ip {ip:08x} sp {sp:08x} error {err:x}"
    # "segfault at %lx ip %p sp %p error %lx" (%px from 4.15): the pointer's width, zero-padded
    line = f"{head} {addr:x} ip {ip:0{w}x} sp {sp:0{w}x} error {err:x}"
    if era.segfault_likely_cpu:
        line += f" likely on CPU {fault.cpu} (core 0, socket 0)"
    if era.segfault_code_line and fault.source == "cpu" and fault.ip is not None:
        # show_signal_msg -> show_opcodes(regs, loglvl): the user code at the faulting ip
        line += "\n" + code_line(k, fault.ip, k.fault_pgd(fault), user=True)
    return line

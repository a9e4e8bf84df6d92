"""construct declarations of the Linux x86_64 process ABI: declarations only.

The layouts a live process and its core both hold (``user_regs_struct``, the fxsave area,
``siginfo_t``, the auxiliary vector, the loaded program's ``Elf64_Phdr``/``Elf64_Dyn`` and
glibc's ``r_debug``/``link_map``), declared once; their numbers and names are in
:mod:`macminidump.linux_abi`. The capture backend does not import this module: it unpacks
the ``struct`` layouts generated from it (:mod:`macminidump.linux_abi_packed`, written by
``python -m macminidump.generate_packed``), so a dump imports no construct. The ELF core's
declarations (:mod:`macminidump.elf.schema`) are made of these.
"""

from __future__ import annotations

from typing import Any

from construct import Bytes, If, Int16ul, Int32sl, Int32ul, Int64sl, Int64ul, RepeatUntil, Struct

from .linux_abi import (
    X86_64_USER_REGS,
    AuxvType,
    SegmentType,
    has_fault_address,
)
from .schema_io import EnumOrInt


def _has_fault_addr(ctx: Any) -> bool:
    return has_fault_address(ctx.si_signo, ctx.si_code)


#: siginfo_t (PTRACE_GETSIGINFO, NT_SIGINFO), 128 bytes. For a kernel-raised fault
#: (``has_fault_address``) the address is ``si_addr``; otherwise ``si_addr`` is None. The
#: rest of the union stays raw in ``si_rest`` (104 bytes after si_addr, else 112).
siginfo = Struct(
    "si_signo" / Int32sl,
    "si_errno" / Int32sl,
    "si_code" / Int32sl,
    "pad0" / Bytes(4),
    "si_addr" / If(_has_fault_addr, Int64ul),
    "si_rest" / Bytes(lambda ctx: 104 if _has_fault_addr(ctx) else 112),
)

auxv_entry = Struct(
    "type" / EnumOrInt(Int64ul, AuxvType),
    "value" / Int64ul,
)

#: /proc/PID/auxv, NT_AUXV: entries up to and including AT_NULL (what follows is not read)
auxv = RepeatUntil(lambda obj, lst, ctx: obj["type"] == AuxvType.AT_NULL, auxv_entry)

#: PTRACE_GETREGS, NT_PRSTATUS's pr_reg
user_regs_struct_x86_64 = Struct(*(name / Int64ul for name in X86_64_USER_REGS))

#: struct user_fpregs_struct (x86_64) = the 512-byte fxsave area (PTRACE_GETFPREGS,
#: NT_FPREGSET). st registers keep all 16 bytes of their slot (10-byte value + 6 reserved)
#: so the area round-trips exactly. Field names: ``linux_abi.X86_64_FPREGS``.
user_fpregs_struct = Struct(
    "fcw" / Int16ul,  # cwd
    "fsw" / Int16ul,  # swd
    "ftw" / Int16ul,  # twd (abridged tag in the low byte)
    "fop" / Int16ul,
    "fpu_ip" / Int64ul,  # rip
    "fpu_dp" / Int64ul,  # rdp
    "mxcsr" / Int32ul,
    "mxcsrmask" / Int32ul,  # mxcr_mask
    *(f"stmm{i}" / Bytes(16) for i in range(8)),  # st_space
    *(f"xmm{i}" / Bytes(16) for i in range(16)),  # xmm_space
    # bytes 464..511: the kernel keeps its software-reserved xstate info here
    "padding" / Bytes(96),
)

#: Elf64_Phdr: a program header, of the loaded program (at AT_PHDR) as of a core
elf64_phdr = Struct(
    "p_type" / EnumOrInt(Int32ul, SegmentType),
    "p_flags" / Int32ul,  # SegmentFlags bits
    "p_offset" / Int64ul,
    "p_vaddr" / Int64ul,
    "p_paddr" / Int64ul,
    "p_filesz" / Int64ul,
    "p_memsz" / Int64ul,
    "p_align" / Int64ul,
)

#: Elf64_Dyn: one entry of ``.dynamic``
elf64_dyn = Struct(
    "d_tag" / Int64sl,
    "d_val" / Int64ul,
)

#: glibc's struct r_debug (40 bytes; ``linux_abi.R_DEBUG_SIZE``) as r_debug_extended
#: (glibc 2.35+, r_version >= 2) extends it: ``r_next`` links the r_debug of the next
#: link-map namespace
r_debug_extended = Struct(
    "r_version" / Int32sl,
    "pad0" / Bytes(4),
    "r_map" / Int64ul,  # the first link_map
    "r_brk" / Int64ul,
    "r_state" / Int32sl,
    "pad1" / Bytes(4),
    "r_ldbase" / Int64ul,
    "r_next" / Int64ul,
)

#: the public head of glibc's struct link_map: one loaded object
link_map = Struct(
    "l_addr" / Int64ul,  # the load bias
    "l_name" / Int64ul,  # its path (a C string; "" for the executable)
    "l_ld" / Int64ul,  # its .dynamic
    "l_next" / Int64ul,
    "l_prev" / Int64ul,
)

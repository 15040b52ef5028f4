#!/usr/bin/env python3
"""bad-programs.py ELF OUTDIR: copies of the libmicrokit program ELF, each spoilt in one way
the Microkit tool's ELF loading (tool/microkit/src/elf.rs, symbols.rs) refuses or panics
on, written to OUTDIR under the names the corpus's descriptions
(tools/iommu-sdf/tests/sdf/microkit/program-*.xml) give in their program_image. The fields
are patched by their offsets in the ELF specification (System V gABI, "ELF Header",
"Sections", "Symbol Table"), so the copies differ from the program in those bytes alone;
microkit-rules.sh hands them to iommu-sdf and to the SDK's Microkit tool.

A spoilt copy's name says what is wrong:
  elf-32-bit.elf              EI_CLASS ELFCLASS32 ("unsupported word size")
  elf-big-endian.elf          EI_DATA ELFDATA2MSB ("only little endian ... supported")
  elf-no-program-headers.elf  e_phnum 0 ("has no program headers")
  elf-no-symbol-table.elf     its SHT_SYMTAB section made SHT_PROGBITS ("unable to find
                              symbol table section")
  elf-no-microkit-name.elf    microkit_name renamed (the tool panics patching it)
  elf-two-microkit-names.elf  a second symbol named microkit_name (the tool panics:
                              "multiple symbols")
  elf-microkit-irqs-outside.elf  microkit_irqs' value outside every loadable segment (the
                              tool panics: it cannot write it)
  elf-microkit-irqs-short.elf microkit_irqs 4 bytes long (the tool writes 8: it panics)
  elf-buffers-4-bytes.elf     the symbol `buffers` 4 bytes long ("setvar to non-word size
                              symbol")
  elf-buffers-over-microkit-irqs.elf  `buffers` given microkit_irqs' address: the tool
                              patches both (refusing neither) and the program reads one value
                              for the two; iommu-sdf refuses the setvar
  elf-segments-share-a-page.elf  the first loadable segment's memsz reaching 16 bytes into
                              the second's first page (the tool panics: "already filled")
  elf-segment-in-the-stack.elf  the first loadable segment (text, which holds no symbol the
                              tool patches) moved to 0xffffffc000, where the default stack,
                              the IPC buffer's guard page and the IPC buffer lie (the tool
                              panics mapping the IPC buffer: "already filled")
  elf-segment-past-the-top.elf  the same segment moved to 2^40, past vspace_user_top: the
                              Microkit tool builds the image; iommu-sdf refuses it (seL4
                              maps no frame there, so the PD could not start)
  elf-bss-256m.elf, elf-bss-2g.elf, elf-bss-64g.elf  the last loadable segment's memsz
                              (its .bss) made 256 MiB, 2 GiB, 64 GiB: the tool copies it
                              into the initialiser's image, and panics (loader.rs,
                              "Overlapping regions": the image reaches the loader), refuses
                              ("cannot allocate memory for the initialiser"), or aborts
                              (allocating 64 GiB); iommu-sdf refuses all three
  elf-x86-64.elf              e_machine EM_X86_64: the Microkit tool does not read e_machine
                              and builds the image; iommu-sdf refuses it (the PD could run
                              none of it)
"""
import os
import struct
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with open(src, "rb") as f:
    elf = bytes(f.read())
assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, "a 64-bit little-endian ELF"

E_MACHINE, E_PHOFF, E_PHNUM, E_SHOFF, E_SHENTSIZE, E_SHNUM = 18, 32, 56, 40, 58, 60
P_VADDR, P_PADDR, P_MEMSZ, PHENTSIZE = 16, 24, 40, 56
SHT_PROGBITS, SHT_SYMTAB = 1, 2
shoff = struct.unpack_from("<Q", elf, E_SHOFF)[0]
shentsize, shnum = struct.unpack_from("<HH", elf, E_SHENTSIZE)


def section(i):
    """(offset of its header, sh_type, sh_offset, sh_size, sh_link)"""
    at = shoff + i * shentsize
    sh_type = struct.unpack_from("<I", elf, at + 4)[0]
    sh_offset, sh_size = struct.unpack_from("<QQ", elf, at + 24)
    sh_link = struct.unpack_from("<I", elf, at + 40)[0]
    return at, sh_type, sh_offset, sh_size, sh_link


symtab = next(section(i) for i in range(shnum) if section(i)[1] == SHT_SYMTAB)
strtab = section(symtab[4])


def symbols():
    """name -> offset of its Elf64_Sym (the first of that name)"""
    found = {}
    for at in range(symtab[2], symtab[2] + symtab[3], 24):
        st_name = struct.unpack_from("<I", elf, at)[0]
        start = strtab[2] + st_name
        name = elf[start:elf.index(b"\0", start)].decode()
        found.setdefault(name, at)
    return found


sym = symbols()


def patched(*edits):
    b = bytearray(elf)
    for offset, fmt, value in edits:
        struct.pack_into(fmt, b, offset, value)
    return b


ST_NAME, ST_VALUE, ST_SIZE = 0, 8, 16
phoff = struct.unpack_from("<Q", elf, E_PHOFF)[0]
# The loadable segments' addresses; the first two are text and data, a page apart or more.
loads = [struct.unpack_from("<Q", elf, phoff + i * PHENTSIZE + P_VADDR)[0]
         for i in range(struct.unpack_from("<H", elf, E_PHNUM)[0])
         if struct.unpack_from("<I", elf, phoff + i * PHENTSIZE)[0] == 1]
assert len(loads) >= 2 and loads[1] - loads[0] >= 0x1000
# The program header of the last loadable segment (data and .bss).
last_load = max(i for i in range(struct.unpack_from("<H", elf, E_PHNUM)[0])
                if struct.unpack_from("<I", elf, phoff + i * PHENTSIZE)[0] == 1)
name_at = strtab[2] + struct.unpack_from("<I", elf, sym["microkit_name"])[0]
# A local symbol to give microkit_name's name: any that is not one the tool patches.
other = next(s for s in sym if s and not s.startswith(("microkit_", "__sel4")) and s != "buffers")
copies = {
    "elf-32-bit.elf": patched((4, "<B", 1)),
    "elf-big-endian.elf": patched((5, "<B", 2)),
    "elf-no-program-headers.elf": patched((E_PHNUM, "<H", 0)),
    "elf-no-symbol-table.elf": patched((symtab[0] + 4, "<I", SHT_PROGBITS)),
    # The last letter of its name in the string table: microkit_namf.
    "elf-no-microkit-name.elf": patched((name_at + len("microkit_name") - 1, "<B", ord("f"))),
    "elf-two-microkit-names.elf": patched(
        (sym[other] + ST_NAME, "<I", struct.unpack_from("<I", elf, sym["microkit_name"])[0])),
    "elf-microkit-irqs-outside.elf": patched((sym["microkit_irqs"] + ST_VALUE, "<Q", 0x10_0000)),
    "elf-microkit-irqs-short.elf": patched((sym["microkit_irqs"] + ST_SIZE, "<Q", 4)),
    "elf-buffers-4-bytes.elf": patched((sym["buffers"] + ST_SIZE, "<Q", 4)),
    "elf-buffers-over-microkit-irqs.elf": patched(
        (sym["buffers"] + ST_VALUE, "<Q", struct.unpack_from("<Q", elf, sym["microkit_irqs"] + ST_VALUE)[0])),
    "elf-x86-64.elf": patched((E_MACHINE, "<H", 62)),
    "elf-segment-in-the-stack.elf": patched((phoff + P_VADDR, "<Q", 0xFF_FFFF_C000), (phoff + P_PADDR, "<Q", 0xFF_FFFF_C000)),
    "elf-segment-past-the-top.elf": patched((phoff + P_VADDR, "<Q", 1 << 40), (phoff + P_PADDR, "<Q", 1 << 40)),
    "elf-segments-share-a-page.elf": patched((phoff + P_MEMSZ, "<Q", loads[1] - loads[0] + 0x10)),
    "elf-bss-256m.elf": patched((phoff + last_load * PHENTSIZE + P_MEMSZ, "<Q", 256 << 20)),
    "elf-bss-2g.elf": patched((phoff + last_load * PHENTSIZE + P_MEMSZ, "<Q", 2 << 30)),
    "elf-bss-64g.elf": patched((phoff + last_load * PHENTSIZE + P_MEMSZ, "<Q", 64 << 30)),
}
for name, data in copies.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

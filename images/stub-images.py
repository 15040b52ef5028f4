#!/usr/bin/env python3
"""stub-images.py SYSTEM OUTDIR: for the Microkit tool to take SYSTEM as it is, an aarch64
ELF in OUTDIR under every program_image name SYSTEM gives, defining every symbol the tool
patches (each setvar's, and the microkit_* ones), and an empty file for every prefill_path.
The programs do nothing: this is for asking the Microkit tool whether it accepts a
description (accepted-descriptions.sh), never for booting it."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

system, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
root = ET.parse(system).getroot()
symbols = {"microkit_irqs", "microkit_notifications", "microkit_pps", "microkit_ioports"}
images, prefills = set(), set()
for e in root.iter():
    for attr in ("setvar_vaddr", "setvar_size", "setvar_id", "setvar_prefill_size"):
        if e.get(attr):
            symbols.add(e.get(attr))
    if e.tag == "setvar" and e.get("symbol"):
        symbols.add(e.get("symbol"))
    if e.tag == "program_image" and e.get("path"):
        images.add(e.get("path"))
    if e.tag == "memory_region" and e.get("prefill_path"):
        prefills.add(e.get("prefill_path"))
asm = [".section .text", ".globl _start", "_start: b _start", ".section .data", ".balign 8"]
# The Microkit tool writes each symbol's value over its size, which must hold it.
for s, size in [("microkit_name", 64), ("microkit_passive", 8)] + [(s, 8) for s in sorted(symbols)]:
    asm += [f".globl {s}", f".type {s}, @object", f".size {s}, {size}", f"{s}: .space {size}"]
asm += [".section .bss", ".balign 4096", ".globl __sel4_ipc_buffer_obj", "__sel4_ipc_buffer_obj: .space 4096"]
src = os.path.join(out, "stub.S")
with open(src, "w") as f:
    f.write("\n".join(asm) + "\n")
elf = os.path.join(out, "stub.elf")
# Linked where Microkit's linker script (microkit.ld) links every PD's program, 0x200000,
# so the Microkit tool's refusal of a map over a program's segments applies as it would to
# a real program (a queue build placed at 0x200000 was accepted over a stub at 0x400000).
subprocess.run(["aarch64-linux-gnu-gcc", "-nostdlib", "-static", "-Wl,-Ttext-segment=0x200000", "-o", elf, src],
               check=True)
for name in images:
    with open(elf, "rb") as f, open(os.path.join(out, os.path.basename(name)), "wb") as g:
        g.write(f.read())
for name in prefills:
    with open(os.path.join(out, os.path.basename(name)), "wb") as f:
        f.write(b"prefill\n")

"""Basic blocks of cuobjdump -sass output (scripts/sass-blocks): reads the listing on stdin and
prints, per kernel whose mangled name matches the pattern, the blocks that issue HGMMA (or, with
--all, every block of 8 or more instructions): offset, instruction count and opcode mix.
A block starts at offset 0, at every branch target and after every branch or exit."""
import collections
import re
import sys

INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
TARGET = re.compile(r"\b0x([0-9a-f]+)\b")  # a branch's target offset


def opcode(text):
    words = text.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0] if words else "?"


def blocks(instrs):
    leaders = {0}
    for i, (off, text) in enumerate(instrs):
        op = opcode(text)
        if op.split(".")[0] in ("BRA", "BRX", "EXIT", "RET", "CALL"):
            m = TARGET.search(text)
            if m:
                leaders.add(int(m.group(1), 16))
            if i + 1 < len(instrs):
                leaders.add(instrs[i + 1][0])
    out, cur = [], []
    for off, text in instrs:
        if off in leaders and cur:
            out.append(cur)
            cur = []
        cur.append((off, text))
    if cur:
        out.append(cur)
    return out


def report(name, instrs, show_all):
    print(f"== {name}: {len(instrs)} instructions")
    for b in blocks(instrs):
        mix = collections.Counter(opcode(t) for _, t in b)
        if not (show_all and len(b) >= 8) and not any(o.startswith("HGMMA") for o in mix):
            continue
        top = ", ".join(f"{o} {n}" for o, n in mix.most_common(14))
        print(f"  block 0x{b[0][0]:x}: {len(b)} instructions: {top}")


def main():
    args = [a for a in sys.argv[1:] if a != "--all"]
    show_all = "--all" in sys.argv[1:]
    pattern = re.compile(args[0] if args else ".")
    name, instrs = None, []
    for line in sys.stdin:
        if "Function :" in line:
            if name and pattern.search(name):
                report(name, instrs, show_all)
            name, instrs = line.split("Function :")[1].strip(), []
            continue
        m = INSTR.search(line)
        if m and name:
            instrs.append((int(m.group(1), 16), m.group(2)))
    if name and pattern.search(name):
        report(name, instrs, show_all)


if __name__ == "__main__":
    main()

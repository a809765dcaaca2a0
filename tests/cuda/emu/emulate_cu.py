#!/usr/bin/env python3
"""Rewrites a .cu file for the CPU emulation (cuda_emu.h): kernel launches
NAME<<<grid, block[, smem[, stream]]>>>(args); become
::emu::launch(::emu::kernel_id(NAME), "NAME", [&] { NAME(args); }, grid, block[, smem[, stream]])
(the kernel's address keys its cudaFuncSetAttribute limit; the name is for messages); dynamic
shared memory comes from the emulator, static shared arrays are refilled with garbage per block,
and CUB is replaced by a stand-in.

usage: emulate_cu.py IN.cu OUT.cpp
"""
import re
import sys


def rewrite_launches(src):
    out, pos = [], 0
    while True:
        i = src.find("<<<", pos)
        if i < 0:
            out.append(src[pos:])
            return "".join(out)
        # The kernel expression before <<<: an identifier, optionally with <template args>,
        # maybe followed by a line break (clang-format's).
        j = i
        while src[j - 1].isspace():
            j -= 1
        if src[j - 1] == ">":
            depth = 0
            while True:
                j -= 1
                if src[j] == ">":
                    depth += 1
                elif src[j] == "<":
                    depth -= 1
                    if depth == 0:
                        break
        while j > 0 and (src[j - 1].isalnum() or src[j - 1] in "_:"):
            j -= 1
        name = src[j:i].strip()
        k = src.index(">>>", i)
        config = src[i + 3:k]
        assert src[k + 3] == "(", f"launch of {name} not followed by '('"
        depth, m = 0, k + 3
        while True:
            if src[m] == "(":
                depth += 1
            elif src[m] == ")":
                depth -= 1
                if depth == 0:
                    break
            m += 1
        args = src[k + 4:m]
        out.append(src[pos:j])
        out.append(f"::emu::launch(::emu::kernel_id({name}), \"{' '.join(name.split())}\", "
                   f"[&] {{ {name}({args}); }}, {config})")
        pos = m + 1


def poison_static_shared(src):
    """__shared__ T a[N], b; becomes static T a[N], b; followed (same line) by a call per array
    that fills it with 0xFF bytes when the block first reaches it: shared memory starts as
    garbage in every block, not as what the previous block left."""
    def repl(m):
        names = [re.match(r"\s*(\w+)", d).group(1) for d in m.group(2).split(",")]
        fills = "".join(f" ::emu::poison_shared(&{n}, sizeof {n});" for n in names)
        return f"static {m.group(1)} {m.group(2)};{fills}"
    return re.sub(r"(?<!extern )__shared__\s+([\w:]+(?:<[^;<>]*>)?)\s+([^;]+);", repl, src)


def main():
    src = open(sys.argv[1]).read()
    src = re.sub(r"#include <cub/[^>]*>", '#include "emu_cub.h"', src)
    src = re.sub(r"extern __shared__ (\w+) (\w+)\[\];",
                 r"\1* \2 = reinterpret_cast<\1*>(::emu::dynamic_smem());", src)
    src = poison_static_shared(src)
    src = rewrite_launches(src)
    with open(sys.argv[2], "w") as f:
        f.write('#include "cuda_emu.h"\n#line 1 "%s"\n' % sys.argv[1])
        f.write(src)


if __name__ == "__main__":
    main()

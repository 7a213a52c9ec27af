"""Random scenarios: a seeded mix of kernel operations that stays valid step after step
(every free frees something live, every access is to a mapped or mappable address), as
TOML text, for the stepping-back tests and the scenario benchmark."""

from __future__ import annotations

import random


def random_scenario(seed: int, steps: int, arch: str = "x86_64", kernel: str = "6.6", ram: str = "128M") -> str:
    """A scenario of *steps* steps (about: a few are added to free what must be freed)."""
    rnd = random.Random(seed)
    out = [f'title = "random scenario {seed}"', "", "[machine]", f'arch = "{arch}"', f'kernel = "{kernel}"',
           f'ram = "{ram}"', ""]
    live = {"page": [], "kmalloc": [], "vmalloc": [], "vmap": [], "process": [], "mmap": [], "fix": []}
    n = 0

    def step(op: str, **fields) -> None:
        nonlocal n
        n += 1
        out.append("[[step]]")
        out.append(f'op = "{op}"')
        for key, value in fields.items():
            if isinstance(value, bool):
                out.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                out.append(f"{key} = {value}")
            elif isinstance(value, list):
                out.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
            else:
                out.append(f'{key} = "{value}"')
        out.append("")

    def name(kind: str) -> str:
        return f"{kind}{n}"

    while n < steps:
        choice = rnd.random()
        if choice < 0.12:
            nm = name("pg")
            step("alloc_pages", order=rnd.choice([0, 0, 0, 1, 2]), **{"as": nm})
            live["page"].append(nm)
        elif choice < 0.20 and live["page"]:
            step("__free_pages", page=live["page"].pop(rnd.randrange(len(live["page"]))))
        elif choice < 0.30:
            nm = name("km")
            step("kmalloc", size=rnd.choice([8, 32, 100, 512, 2048, 5000]), **{"as": nm})
            live["kmalloc"].append(nm)
        elif choice < 0.37 and live["kmalloc"]:
            step("kfree", addr=live["kmalloc"].pop(rnd.randrange(len(live["kmalloc"]))))
        elif choice < 0.46:
            nm = name("vm")
            step("vmalloc", size=f"{rnd.randint(1, 6)} * 4096", **{"as": nm})
            live["vmalloc"].append(nm)
        elif choice < 0.52 and live["vmalloc"]:
            nm = rnd.choice(live["vmalloc"])
            step("expect_translation", addr=f"{nm} + 0", page_size=4096)
        elif choice < 0.58 and live["vmalloc"]:
            step("vfree", addr=live["vmalloc"].pop(rnd.randrange(len(live["vmalloc"]))))
        elif choice < 0.62:
            pages = []
            for _ in range(rnd.randint(1, 3)):
                nm = name("vp") + f"_{len(pages)}"
                step("alloc_pages", **{"as": nm})
                pages.append(nm)
            nm = name("vmap")
            step("vmap", pages=pages, **{"as": nm})
            live["vmap"].append((nm, pages))
        elif choice < 0.65 and live["vmap"]:
            nm, pages = live["vmap"].pop(rnd.randrange(len(live["vmap"])))
            step("vunmap", addr=nm)
            for pg in pages:
                step("__free_pages", page=pg)
        elif choice < 0.70 and len(live["process"]) < 4:
            nm = name("proc")
            step("create_process", comm="rand", **{"as": nm})
            live["process"].append(nm)
        elif choice < 0.78 and live["process"]:
            proc = rnd.choice(live["process"])
            nm = name("map")
            length = rnd.randint(1, 8)
            step("mmap", process=proc, length=f"{length} * 4096", **{"as": nm})
            live["mmap"].append((nm, proc, length))
        elif choice < 0.86 and live["mmap"]:
            nm, proc, length = rnd.choice(live["mmap"])
            step("access", addr=f"{nm} + {rnd.randrange(length)} * 4096 + {rnd.randrange(4096)}",
                 access=rnd.choice(["read", "write"]), user=True, process=proc)
        elif choice < 0.89 and live["process"] and len(live["process"]) < 4:
            parent = rnd.choice(live["process"])
            nm = name("child")
            step("fork", process=parent, **{"as": nm})
            live["process"].append(nm)
            live["mmap"] += [(m, nm, ln) for m, p, ln in live["mmap"] if p == parent]
        elif choice < 0.92 and live["process"]:
            proc = live["process"].pop(rnd.randrange(len(live["process"])))
            live["mmap"] = [m for m in live["mmap"] if m[1] != proc]
            step("exit", process=proc)
        elif choice < 0.95 and live["mmap"]:
            nm, proc, length = live["mmap"].pop(rnd.randrange(len(live["mmap"])))
            live["mmap"] = [m for m in live["mmap"] if m[0] != nm or m[1] != proc]
            step("munmap", process=proc, addr=nm, length=f"{length} * 4096")
        elif choice < 0.98 and live["page"]:
            step("kmap", page=rnd.choice(live["page"]), **{"as": name("kmap")})
        else:
            step("expect_count", what="modules", value=0)
    return "\n".join(out) + "\n"

#!/usr/bin/env python3
"""check-layering.py — fail on an #include or a library link that crosses a layer the wrong way.

The build already refuses an #include that no target_link_libraries edge backs (each
library sees only its own headers and those of what it links: cmake/Layering.cmake).
This script checks the other half, the direction: which folder may use which.

  scripts/check-layering.py                  the sources (every quoted #include)
  scripts/check-layering.py --build build    also the link graph CMake wrote (build/layering.json)

Exit status 0 when everything points down the table below, 1 with one line per violation.
"""
import argparse
import json
import pathlib
import re
import sys

# Each component (a folder, most specific first) and the components it may include or
# link directly. This is the layer diagram of docs/ARCHITECTURE.md ("Layers"); change both
# together. The guest agent (vmm/agent/guest) is a static binary inside the guest: it may
# use the agent protocol, the listener probes and the header-only base, never the host's
# engine or devices.
ALLOWED = {
    "base": set(),
    "dns": {"base"},
    "portfwd": {"base"},
    "netstack": {"base", "dns", "portfwd"},
    "netstack/mirror": {"base", "netstack"},
    "vmm/machine": {"base"},
    "vmm/distro": {"base"},
    "vmm": {"base", "netstack"},
    "vmm/agent/guest": {"base", "portfwd", "netstack/mirror", "vmm/agent"},
    "vmm/agent": {"base", "portfwd", "netstack/mirror", "vmm"},
    "cli": {"base", "dns", "portfwd", "netstack", "netstack/mirror", "vmm", "vmm/machine", "vmm/distro", "vmm/agent"},
}
# Most specific prefix first.
COMPONENTS = sorted(ALLOWED, key=lambda c: -len(c))
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def component_of(path: str):
    for c in COMPONENTS:
        if path == c or path.startswith(c + "/"):
            return c
    return None


def check_sources(root: pathlib.Path) -> list[str]:
    problems = []
    for comp in ALLOWED:
        for src in sorted((root / comp).rglob("*")):
            if src.suffix not in (".cpp", ".hpp", ".h", ".cc"):
                continue
            rel = src.relative_to(root).as_posix()
            if component_of(rel) != comp:
                continue  # a more specific component owns it
            for lineno, line in enumerate(src.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                target = component_of(m.group(1))
                if target is None:
                    # A sibling include ("wire.hpp") or a path outside the layered tree.
                    if "/" in m.group(1):
                        problems.append(f"{rel}:{lineno}: includes {m.group(1)}, which is in no layer")
                    continue
                if target != comp and target not in ALLOWED[comp]:
                    problems.append(f"{rel}:{lineno}: {comp} may not include {m.group(1)} ({target}); "
                                    f"{comp} may use: {', '.join(sorted(ALLOWED[comp])) or 'nothing'}")
    return problems


def library_components(build: pathlib.Path, name: str) -> set:
    stage = build / "include" / name
    comps = set()
    for h in stage.rglob("*.hpp"):
        c = component_of(h.relative_to(stage).as_posix())
        if c:
            comps.add(c)
    return comps


def check_links(build: pathlib.Path) -> list[str]:
    graph_file = build / "layering.json"
    if not graph_file.exists():
        return [f"{graph_file}: missing (configure the build tree first)"]
    graph = json.loads(graph_file.read_text())
    comps = {lib: library_components(build, lib) for lib in graph}
    problems = []
    for lib, links in graph.items():
        if len(comps[lib]) != 1:
            problems.append(f"{lib}: its headers span {sorted(comps[lib]) or 'no'} component(s); a library lives in one")
            continue
        (mine,) = comps[lib]
        for dep in links:
            for theirs in comps.get(dep, set()):
                if theirs != mine and theirs not in ALLOWED[mine]:
                    problems.append(f"{lib} ({mine}) links {dep} ({theirs}), which {mine} may not use")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=pathlib.Path, help="a configured build tree: also check its link graph")
    args = ap.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent
    problems = check_sources(root)
    if args.build:
        problems += check_links(args.build)
    for p in problems:
        print(p)
    print(f"check-layering: {len(problems)} violation(s)" if problems else "check-layering: every include and link points down")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

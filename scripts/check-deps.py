#!/usr/bin/env python3
"""The include half of Sluice's module check (docs/architecture.md, "Modules").

Each folder of src/ is a module; CMakeLists.txt declares, in one sluice_module() line per
module, the modules it may use, and writes them to <build>/sluice-modules.txt as
`module: dep dep ...`. This script fails (exit 1, every finding on stderr as file:line) when:
  - a file in src/<m>/ includes "x/..." for a module x that is neither m nor declared by m,
  - an include climbs out of its folder ("../x.h"), which would dodge the rule above,
  - a file in src/ has the path of a system header (src/net/if.h would hide <net/if.h>),
  - a folder of src/ is not a declared module, or a declaration names an unknown module,
  - the declared graph has a cycle (modules depend downwards only),
  - with --tests: a test in <tests>/<m>/ includes "x/..." for a module x that m does not use,
    directly or through its dependencies (a module's tests use what the module may use).
Usage: scripts/check-deps.py [--modules build/release/sluice-modules.txt] [--src src]
                             [--tests tests/unit]
"""

import argparse
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*(?:"([^"]+)"|<([^>]+)>)')
SYSTEM_INCLUDE_DIRS = ('/usr/include', '/usr/local/include')
SOURCE_SUFFIXES = ('.h', '.hh', '.hpp', '.cc', '.cpp', '.c', '.inc')


def read_modules(path):
    """{module: [deps]} from the file CMake wrote; errors as a list of strings."""
    modules, errors = {}, []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            name, sep, deps = line.partition(':')
            name = name.strip()
            if not sep or not re.fullmatch(r'[a-z][a-z0-9_]*', name):
                errors.append(f'{path}:{n}: expected "module: dep dep ...", got {line!r}')
                continue
            if name in modules:
                errors.append(f'{path}:{n}: module {name} declared twice')
            modules[name] = deps.split()
    return modules, errors


def check_graph(modules, modules_file):
    errors = []
    for m, deps in sorted(modules.items()):
        for d in deps:
            if d not in modules:
                errors.append(f'{modules_file}: module {m} declares {d}, which is not a module')
            elif d == m:
                errors.append(f'{modules_file}: module {m} declares itself')
    # Depth-first search for a cycle among the declared edges.
    state, stack = {}, []

    def visit(m):
        state[m] = 'open'
        stack.append(m)
        for d in modules.get(m, []):
            if d not in modules or d == m:
                continue
            if state.get(d) == 'open':
                cycle = stack[stack.index(d):] + [d]
                errors.append(f'{modules_file}: modules form a cycle: {" -> ".join(cycle)}')
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 'done'

    for m in sorted(modules):
        if m not in state:
            visit(m)
    return errors


def check_sources(modules, src):
    errors = []
    folders = sorted(e.name for e in os.scandir(src) if e.is_dir())
    for folder in folders:
        if folder not in modules:
            errors.append(f'{os.path.join(src, folder)}/: folder is not a module: add a '
                          f'sluice_module({folder} DEPS ...) line to CMakeLists.txt')
    for m in sorted(modules):
        if m not in folders:
            errors.append(f'{src}: module {m} is declared but has no folder src/{m}/')
    for folder in folders:
        allowed = set(modules.get(folder, [])) | {folder}
        root = os.path.join(src, folder)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(SOURCE_SUFFIXES):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, src)
                for sysdir in SYSTEM_INCLUDE_DIRS:
                    if os.path.isfile(os.path.join(sysdir, rel)):
                        errors.append(f'{path}: shadows the system header <{rel}> for every '
                                      f'module (-Isrc comes first): rename it')
                with open(path, encoding='utf-8', errors='replace') as f:
                    for n, line in enumerate(f, 1):
                        match = INCLUDE.match(line)
                        if not match:
                            continue
                        target = match.group(1) or match.group(2)
                        # <x/y.h> is ours only when src/ has it (-Isrc comes first), else a
                        # system header such as <net/if.h>.
                        if match.group(2) and not os.path.isfile(os.path.join(src, target)):
                            continue
                        if target.startswith('../') or '/../' in target:
                            errors.append(f'{path}:{n}: #include "{target}" climbs out of its '
                                          f'folder; include "module/file.h" from src/')
                            continue
                        top = target.split('/', 1)[0] if '/' in target else None
                        if top is None or top not in modules or top in allowed:
                            continue
                        deps = ' '.join(modules.get(folder, [])) or 'nothing'
                        errors.append(f'{path}:{n}: module {folder} includes "{target}" but may '
                                      f'use only: {deps} (CMakeLists.txt, sluice_module({folder} '
                                      f'...); docs/architecture.md)')
    return errors


def reachable(modules, m):
    """The modules m uses, directly or through its dependencies."""
    seen, todo = set(), list(modules.get(m, []))
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(modules.get(d, []))
    return seen


def check_tests(modules, tests, src):
    errors = []
    for folder in sorted(e.name for e in os.scandir(tests) if e.is_dir()):
        if folder not in modules:
            continue  # shared test helpers
        allowed = reachable(modules, folder) | {folder}
        for dirpath, dirnames, filenames in os.walk(os.path.join(tests, folder)):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(SOURCE_SUFFIXES):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding='utf-8', errors='replace') as f:
                    for n, line in enumerate(f, 1):
                        match = INCLUDE.match(line)
                        if not match:
                            continue
                        target = match.group(1) or match.group(2)
                        if match.group(2) and not os.path.isfile(os.path.join(src, target)):
                            continue
                        top = target.split('/', 1)[0] if '/' in target else None
                        if top is None or top not in modules or top in allowed:
                            continue
                        errors.append(f'{path}:{n}: a test of module {folder} includes '
                                      f'"{target}", which {folder} does not use (it may use: '
                                      f'{" ".join(sorted(allowed))})')
    return errors


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--modules',
                        default=os.path.join(repo, 'build', 'release', 'sluice-modules.txt'),
                        help='the list CMake wrote (default: build/release/sluice-modules.txt)')
    parser.add_argument('--src', default=os.path.join(repo, 'src'), help='the source root')
    parser.add_argument('--tests', help='a test root with one folder per module (tests/unit)')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.modules):
        print(f'check-deps: {args.modules}: no such file (configure with cmake first)',
              file=sys.stderr)
        return 2
    modules, errors = read_modules(args.modules)
    errors += check_graph(modules, args.modules)
    errors += check_sources(modules, args.src)
    if args.tests:
        errors += check_tests(modules, args.tests, args.src)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f'check-deps: {len(errors)} problem(s)', file=sys.stderr)
        return 1
    print(f'check-deps: {len(modules)} modules, every include goes a declared way')
    return 0


if __name__ == '__main__':
    sys.exit(main())

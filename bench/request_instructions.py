#!/usr/bin/env python3
"""The gateway's own work per request as machine instructions, counted by callgrind.

Runs the routes of ``request_cost.py`` (the Flask app in-process, the fake ``claude``)
under valgrind's callgrind and reports, per route, the instructions the gateway process
executes per request: its request thread and its background threads (ledger, access log),
not the CLI, which runs outside valgrind. A segment starts at each ``eval("0")`` marker
(``--dump-before=builtin_eval``), so the start-up and the warm-up are not counted. The
count does not depend on the CPU's speed, but it is not fixed either: poll loops and
background timers tick in wall time, which valgrind stretches about fifty-fold, and how a
CLI's output falls into reads varies. Repeated runs of one tree differed by 3-9 % on a
loaded machine; compare two trees run side by side, several times.

    python3 bench/request_instructions.py [--src DIR] [--requests 20] [--routes openai,health]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def inner(src: str | None, requests: int, names: list[str]) -> None:
    """Under valgrind: warm every route up, then one marked segment per route."""
    sys.path.insert(0, str(HERE))
    from request_cost import route_calls

    calls = route_calls(src)
    for name in names:
        for _ in range(5):
            calls[name]()
    for name in names:
        eval("0")  # segment boundary (callgrind --dump-before=builtin_eval)
        for _ in range(requests):
            calls[name]()
    eval("0")


def summary(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise ValueError(f"{path}: no summary line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", help="source tree holding the clinvk package to measure")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--routes", default="native,openai,anthropic,health")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.routes.split(",")
    if args.inner:
        inner(args.src, args.requests, names)
        return
    with tempfile.TemporaryDirectory(prefix="clinvk-instr-") as tmp:
        out = Path(tmp) / "cg"
        argv = ["valgrind", "--tool=callgrind", "--dump-before=builtin_eval",
                f"--callgrind-out-file={out}.%p", sys.executable, __file__, "--inner",
                "--requests", str(args.requests), "--routes", args.routes]
        if args.src:
            argv += ["--src", args.src]
        # PYTHONHASHSEED fixed: set and dict orders, and so the work, repeat exactly.
        subprocess.run(argv, check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
        files: dict[str, list[Path]] = {}  # by pid: the gateway has the most segments
        for path in Path(tmp).glob("cg.*"):
            files.setdefault(path.name.split(".")[1], []).append(path)
        parts = max(files.values(), key=len)
        numbered = sorted((p for p in parts if p.name.count(".") == 2),
                          key=lambda p: int(p.name.rsplit(".", 1)[1]))
        segments = numbered[-len(names):]
        result = {name: summary(seg) / args.requests
                  for name, seg in zip(names, segments, strict=True)}
    print(json.dumps({"src": args.src or str(HERE.parent), "requests": args.requests,
                      "instructions_per_request": result}))


if __name__ == "__main__":
    main()

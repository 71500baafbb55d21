"""Run the benchmark harness.

    python benchmarks/run.py --backend sqlite --backend memory [--quick] [--json out.json]

Each backend is a module ``benchmarks/backends/<name>.py`` (see ``benchmarks/README.md``). The exit
status is 1 when a figure misses its DESIGN.md target, 2 on usage errors, 3 when the run crashed. The
targets are read from ``$EVENTSOURCE_DESIGN_MD`` or ``<repo>/../shared/DESIGN.md`` (see ``targets.py``);
without it the run reports "no targets".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import WORKLOADS, Options, run_backends


def available() -> list[str]:
    """Backend module names found in ``benchmarks/backends``."""
    here = Path(__file__).resolve().parent / "backends"
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    """Parse options and run."""
    ap = argparse.ArgumentParser(description="eventsource benchmarks: library vs raw driver, same store, same run")
    ap.add_argument(
        "--backend", action="append", dest="backends", help=f"backend to run (repeatable): {', '.join(available())}"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    ap.add_argument("--json", type=Path, help="write the results as JSON to this file")
    ap.add_argument("--repetitions", type=int, help="ABAB rounds per workload (median taken over them)")
    ap.add_argument(
        "--big-n", type=int, help="events in the big store of big_store_read_100 (default 1,000,000; --quick 20,000)"
    )
    ap.add_argument("--workdir", type=Path, help="where file-based backends put their files (default /var/tmp)")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only workloads starting with this, a whole row name included (repeatable): {', '.join(WORKLOADS)}",
    )
    ap.add_argument(
        "--no-peers", action="store_true", help="only lib and raw (no aiosqlite, eventsourcing, envelope contestants)"
    )
    ap.add_argument(
        "--skip-missing", action="store_true", help="skip backends whose module is not there instead of failing"
    )
    args = ap.parse_args(argv)
    names = args.backends or ["sqlite", "memory"]
    missing = [n for n in names if n not in available()]
    if missing:
        if not args.skip_missing:
            ap.error(f"unknown backend(s) {missing}; available: {available()}")
        names = [n for n in names if n not in missing]
    kw = {}
    if args.repetitions:
        kw["repetitions"] = args.repetitions
    if args.big_n is not None:
        kw["big_n"] = args.big_n
    if args.workdir:
        kw["workdir"] = args.workdir
    if args.only:
        kw["only"] = tuple(args.only)
    if args.no_peers:
        kw["peers"] = False
    options = Options.quick(**kw) if args.quick else Options(**kw)
    return run_backends(names, options, args.json)


if __name__ == "__main__":
    try:
        status = main()
    except Exception:  # noqa: BLE001 - a crash is not a missed target (status 1): its own status
        import traceback

        traceback.print_exc()
        status = 3
    sys.exit(status)

"""``edge-models``: list installed model packages and verify their files."""

from __future__ import annotations

import argparse
import json
import sys

from edge.cli import fail

PROG = "edge-models"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="Manage model packages.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="installed packages with their variants and metrics")
    ls.add_argument("--json", action="store_true")
    v = sub.add_parser("verify", help="check every file of a package against its sha256")
    v.add_argument("name", nargs="?", help="package name or directory (default: all installed)")
    f = sub.add_parser("fetch", help="download a speech model (needs internet once): vosk-small-en-us")
    f.add_argument("name", help="model name, e.g. vosk-small-en-us")
    f.add_argument("--dest", help="install directory (default: ~/.local/share/edge/stt/NAME)")
    f.add_argument("--url", help="download from this URL instead (the pinned sha256 still applies)")
    f.add_argument("--force", action="store_true", help="replace an installed copy")
    args = p.parse_args(argv)
    if args.cmd == "fetch":
        return fetch(args)
    from edge.package import ModelPackage, PackageError, find_package, installed_packages

    if args.cmd == "list":
        rows = []
        for name, path in installed_packages().items():
            try:
                pkg = ModelPackage.load(path, verify=False)
            except PackageError as exc:
                rows.append({"name": name, "path": str(path), "error": str(exc)})
                continue
            rows.append(
                {
                    "name": name,
                    "version": pkg.version,
                    "path": str(path),
                    "intents": len(pkg.labels),
                    "variants": [f"{x.backend}/{x.precision}" for x in pkg.variants],
                    "accuracy": pkg.manifest.get("metrics", {}).get("headline", {}),
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print("no model packages installed")
        for r in rows if not args.json else []:
            if "error" in r:
                print(f"{r['name']:28} BROKEN  {r['error']}")
            else:
                print(
                    f"{r['name']:28} {r['version']:8} {r['intents']:3} intents  {', '.join(r['variants'])}  {r['path']}"
                )
        return 0
    try:
        targets = (
            [find_package(args.name, verify=False)]
            if args.name
            else [ModelPackage.load(path, verify=False) for path in installed_packages().values()]
        )
    except PackageError as exc:
        return fail(PROG, str(exc))
    bad = 0
    for pkg in targets:
        problems = pkg.verify_all()
        if problems:
            bad += 1
            print(f"{pkg.name}: FAILED")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{pkg.name}: OK ({len(pkg.manifest['files'])} files)")
    return 1 if bad else 0


def fetch(args) -> int:
    """Download, verify (pinned sha256) and unpack atomically; a partial model is never left in place."""
    from edge.stt import vosk_fetch

    if args.name not in vosk_fetch.MODELS:
        return fail(PROG, f"unknown model {args.name!r}; available: {', '.join(sorted(vosk_fetch.MODELS))}")

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and total:
            print(f"\r{args.name}: {done * 100 // total}%", end="", file=sys.stderr)

    try:
        path = vosk_fetch.fetch(args.name, dest=args.dest, url=args.url, progress=progress, force=args.force)
    except vosk_fetch.FetchError as exc:
        return fail(PROG, str(exc), code=1)
    print(f"{args.name}: installed in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

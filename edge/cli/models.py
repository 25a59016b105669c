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
    args = p.parse_args(argv)
    from edge.package import ModelPackage, PackageError, find_package, installed_packages

    if args.cmd == "list":
        rows = []
        for name, path in installed_packages().items():
            try:
                pkg = ModelPackage.load(path, verify=False)
            except PackageError as exc:
                rows.append({"name": name, "path": str(path), "error": str(exc)})
                continue
            rows.append({"name": name, "version": pkg.version, "path": str(path), "intents": len(pkg.labels),
                         "variants": [f"{x.backend}/{x.precision}" for x in pkg.variants],
                         "accuracy": pkg.manifest.get("metrics", {}).get("headline", {})})
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print("no model packages installed")
        for r in rows if not args.json else []:
            if "error" in r:
                print(f"{r['name']:28} BROKEN  {r['error']}")
            else:
                print(f"{r['name']:28} {r['version']:8} {r['intents']:3} intents  {', '.join(r['variants'])}  {r['path']}")
        return 0
    try:
        targets = [find_package(args.name, verify=False)] if args.name else [
            ModelPackage.load(path, verify=False) for path in installed_packages().values()]
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


if __name__ == "__main__":
    sys.exit(main())

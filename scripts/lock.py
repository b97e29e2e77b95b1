"""Write requirements.lock: every Python dependency of mmops[test] pinned with its sha256.

Run with the environment's own interpreter after changing dependencies (`make lock`):

    .venv/bin/python scripts/lock.py [--output requirements.lock] [--jobs 4]

Versions are the ones installed in that environment (what the tests ran against). The requirements
in pyproject.toml (dependencies, the `test` extra, the build backend) are followed through the
installed metadata, so tools installed by hand stay out; they are listed on stderr. Each pin gets the
sha256 of the file pip downloads for it on this platform (`pip download --no-deps`, a wheel where
one exists), so the lock holds for this Python version and platform (CPython 3.11, Linux x86_64).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import (
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "mmops"
EXTRAS = ("test",)


def installed() -> dict[NormalizedName, metadata.Distribution]:
    """Installed distributions by normalized name (the first on sys.path wins, as in imports)."""
    dists: dict[NormalizedName, metadata.Distribution] = {}
    for dist in metadata.distributions():
        dists.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return dists


def closure(roots: list[Requirement], dists: dict[NormalizedName, metadata.Distribution]) -> dict[NormalizedName, str]:
    """Name -> installed version for every distribution `roots` need, markers evaluated here."""
    pins: dict[NormalizedName, str] = {}
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    todo = [(req, "") for req in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = dists.get(name)
        if dist is None:
            raise SystemExit(f"error: {req} is required but not installed; install it, then lock again")
        if not req.specifier.contains(dist.version, prereleases=True):
            raise SystemExit(f"error: installed {name}=={dist.version} does not satisfy {req}")
        pins[name] = dist.version
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            # A requirement guarded by `extra == "x"` applies only when x was asked for.
            for asked in ("", *req.extras):
                if sub_req.marker is None or sub_req.marker.evaluate({"extra": asked}):
                    todo.append((sub_req, asked))
                    break
    return pins


def download(pins: list[str], dest: Path) -> dict[NormalizedName, Path]:
    """Files pip picks for `pins` on this machine (wheels; an sdist only where no wheel exists)."""
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(dest)]
    done = subprocess.run([*base, "--only-binary=:all:", *pins], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        if len(pins) > 1:  # find the pin(s) without a wheel one by one
            found: dict[NormalizedName, Path] = {}
            for i, pin in enumerate(pins):
                found |= download([pin], dest / str(i))
            return found
        done = subprocess.run([*base, *pins], check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: pip download {pins[0]} failed:\n{done.stderr}")
        print(f"note: no wheel for {pins[0]}; locked its sdist", file=sys.stderr)
    files: dict[NormalizedName, Path] = {}
    for path in dest.iterdir():
        if path.suffix == ".whl":
            files[parse_wheel_filename(path.name)[0]] = path
        elif path.is_file():
            files[parse_sdist_filename(path.name)[0]] = path
    return files


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(pins: dict[NormalizedName, str], lock: Path) -> None:
    """Exit 1, naming each difference, unless `lock` pins exactly `pins`."""
    locked: dict[NormalizedName, str] = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split(" ", 1)[0].split("==")
            locked[canonicalize_name(name)] = version
    diff = [
        f"  {n}: locked {locked.get(n, '-')}, needed {pins.get(n, '-')}"
        for n in sorted(set(pins) | set(locked))
        if pins.get(n) != locked.get(n)
    ]
    if diff:
        raise SystemExit(f"error: {lock.name} is out of date with pyproject.toml; run `make lock`:\n" + "\n".join(diff))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "requirements.lock", help="the lock file")
    parser.add_argument("--jobs", type=int, default=4, help="parallel pip downloads")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that the lock pins exactly what pyproject.toml needs, as installed",
    )
    args = parser.parse_args()

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # From pyproject.toml, not the installed metadata: an editable install's copy may be stale.
    project = pyproject["project"]
    needed = project["dependencies"] + [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    roots = [Requirement(r) for r in needed + pyproject["build-system"]["requires"]]
    dists = installed()
    pins = closure(roots, dists)
    if args.check:
        check(pins, args.output)
        return
    extra = sorted(set(dists) - set(pins) - {PROJECT, "pip"})
    if extra:
        print(f"note: installed but not required, left out: {' '.join(extra)}", file=sys.stderr)

    specs = [f"{name}=={version}" for name, version in sorted(pins.items())]
    chunks = [specs[i :: args.jobs] for i in range(args.jobs)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        dirs = [Path(tmp) / str(i) for i in range(len(chunks))]
        files: dict[NormalizedName, Path] = {}
        for found in pool.map(download, chunks, dirs):
            files |= found
        missing = sorted(set(pins) - set(files))
        if missing:
            raise SystemExit(f"error: pip downloaded no file for: {' '.join(missing)}")
        hashes = dict(zip(files, pool.map(sha256, files.values())))

    py = sys.version_info
    env = Path(sys.prefix)
    env_name = env.relative_to(ROOT) if env.is_relative_to(ROOT) else env
    lines = [
        f"# Generated by scripts/lock.py (`make lock`) from the environment {env_name}:",
        f"# every dependency of {PROJECT}[{','.join(EXTRAS)}] and its build backend, with the sha256",
        f"# of the file pip installs on CPython {py.major}.{py.minor}, Linux x86_64.",
        "# scripts/bootstrap.sh installs it with `pip install --require-hashes --no-deps -r`.",
    ]
    for name, version in sorted(pins.items()):
        lines.append(f"{name}=={version} --hash=sha256:{hashes[name]}")  # one line: greppable
    args.output.write_text("\n".join(lines) + "\n")
    print(f"locked {len(pins)} distributions in {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()

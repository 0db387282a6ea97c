"""What every benchmark report starts with: the commit it was measured on (and the uncommitted changes,
if any), the machine, package versions; number formats; writing the report."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def emit(report: str, out=None) -> None:
    """Print a markdown report and append it to `out` (a path) when one is given."""
    print(report)
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(report + "\n")


def commit_header() -> str:
    """One markdown line naming the commit the code was measured on. On a tree with uncommitted changes
    it says so and records them (`git diff --stat HEAD`, untracked files by name), so a report never
    passes for a clean commit's; a report for RESULTS.md is rerun once they are committed."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()

    try:
        commit = git("rev-parse", "HEAD")
    except OSError:
        return "Commit: unknown (git not installed)."
    if not commit:
        return "Commit: unknown (not a git checkout)."
    diff = git("diff", "--stat", "HEAD")
    untracked = git("ls-files", "--others", "--exclude-standard").split()
    if not diff and not untracked:
        return f"Commit: {commit} (clean tree)."
    lines = textwrap.dedent(diff).splitlines() + [f"untracked: {f}" for f in untracked]
    return (f"Commit: {commit} **plus uncommitted changes** (not a clean measurement):\n\n"
            + textwrap.indent("\n".join(lines), "    "))


def package_versions(dists) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in dists:
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def fmt_s(x):
    return "" if x is None else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_mib(b):
    return "" if b is None else f"{b / 2**20:.1f}"


def fmt_ms(x):
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def load_str(avg) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, CPU {cpu}, RAM {mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def write_report(text: str, out: Path | None, filename: str):
    """Print the report; also write it to OUT/filename when a folder is given."""
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / filename
        path.write_text(text, encoding="utf-8")
        print(f"written: {path}", file=sys.stderr)

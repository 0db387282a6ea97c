"""Training data for the default model's heads (issue 4): Debian's package descriptions and their
translations, as a corpus of title -> body pairs in many languages.

    python scripts/debian_descriptions.py --out ~/.cache/hsearch/train/debian --langs en,de,fr,es,ja,ko,ru,zh_CN
    hsearch train --pairs ~/.cache/hsearch/train/debian/corpus.jsonl ...

apt's Translation files (dists/<release>/main/i18n/Translation-<lang>) hold, per package, a one-line
short description (the title) and a long description (the body). Each file is checked against the
SHA256 in the release's Release file before it is used. Every document keeps `md5`, the
Description-md5 shared by all translations of one English description, so cross-lingual pairs (the
same description in two languages) can be drawn from the corpus. Debian's descriptions are under the
licences of their packages (DFSG-free); this script downloads them and never ships them.
"""
from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import lzma
import sys
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"


def release_hashes(mirror: str, release: str) -> dict[str, str]:
    text = urllib.request.urlopen(f"{mirror}/dists/{release}/Release", timeout=60).read().decode()
    out, section = {}, None
    for line in text.splitlines():
        if not line.startswith(" "):
            section = line.rstrip(":")
        elif section == "SHA256":
            digest, _size, name = line.split()
            out[name] = digest
    return out


def fetch(mirror: str, release: str, lang: str, hashes: dict[str, str], cache: Path) -> str:
    for ext, opener in ((".bz2", bz2.decompress), (".xz", lzma.decompress)):
        name = f"main/i18n/Translation-{lang}{ext}"
        if name not in hashes:
            continue
        path = cache / f"{release}-Translation-{lang}{ext}"
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != hashes[name]:
            data = urllib.request.urlopen(f"{mirror}/dists/{release}/{name}", timeout=120).read()
            if hashlib.sha256(data).hexdigest() != hashes[name]:
                raise SystemExit(f"{name}: SHA256 does not match the Release file; not using it")
            path.write_bytes(data)
        return opener(path.read_bytes()).decode("utf-8", errors="replace")
    raise SystemExit(f"no Translation-{lang} in {release}'s Release file")


def parse(text: str, lang: str):
    """Yield {package, md5, title, body} records of one Translation file."""
    for block in text.split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        desc = fields.get(f"Description-{lang}")
        if not desc or "Package" not in fields:
            continue
        title, _, body = desc.partition("\n")
        # " ." lines are paragraph breaks in Debian's format
        body = "\n".join("" if line.strip() == "." else line for line in body.splitlines()).strip()
        yield {"package": fields["Package"], "md5": fields.get("Description-md5", ""), "title": title.strip(),
               "body": body}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--langs", default="en,de,fr,es,ja,ko,ru,zh_CN")
    ap.add_argument("--release", default="bookworm")
    ap.add_argument("--mirror", default=MIRROR)
    ap.add_argument("--min-body", type=int, default=80, help="skip bodies shorter than this (characters)")
    a = ap.parse_args()
    out = Path(a.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    hashes = release_hashes(a.mirror, a.release)
    counts = {}
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for lang in a.langs.split(","):
            n = 0
            for r in parse(fetch(a.mirror, a.release, lang, hashes, out), lang):
                if len(r["body"]) >= a.min_body:
                    f.write(json.dumps({"_id": f"{lang}/{r['package']}", "title": r["title"], "text": r["body"],
                                        "lang": lang.split("_")[0], "md5": r["md5"]}, ensure_ascii=False) + "\n")
                    n += 1
            counts[lang] = n
            print(f"{lang}: {n} descriptions", file=sys.stderr)
    (out / "README.md").write_text(
        f"Debian {a.release} package descriptions (main/i18n Translation files, SHA256-checked), "
        f"written by scripts/debian_descriptions.py: {json.dumps(counts)}\n")


if __name__ == "__main__":
    main()

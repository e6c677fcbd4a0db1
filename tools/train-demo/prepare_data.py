#!/usr/bin/env python3
"""Turn Debian's King James Bible into the demo model's training and held-out text.

Source: the `bible` program from Debian package `bible-kjv` (it reads the
compressed text in /usr/lib/bible.data from package `bible-kjv-text`, 4.38 on
Debian 12). `bible -f Gen1:1-Rev22:21` prints all 31,102 verses, one a line, as
`<BookAbbrev><chapter>:<verse> <text>` (e.g. `Ge1:1 In the beginning ...`).

Output style (same for both files), chosen so that generated text reads like a
printed KJV: verse text only (no book/chapter/verse references), one verse a
line, a blank line between chapters; runs of whitespace inside a verse are
collapsed to one space (the source has three stray double/trailing spaces).

  --out DIR/train.txt     every book but Revelation; books are separated by a
                          line holding exactly `<|endoftext|>` (train.py splits
                          on it and inserts token 50256 itself)
  --out DIR/revelation.txt  Revelation only (the held-out evaluation text; a
                          copy is committed as tools/train-demo/revelation.txt)

Deterministic: same package version -> byte-identical files. Prints the
package versions, verse/book counts and SHA-256 of both files.

    python3 tools/train-demo/prepare_data.py --out tools/train-demo/out/data
"""
import argparse
import hashlib
import os
import re
import subprocess

HELD_OUT = "Rev"  # the book abbreviation `bible` prints for Revelation
EOT = "<|endoftext|>"
VERSE_RE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def package_version(name):
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def read_bible():
    """Return [(book, [(chapter, [verse_text, ...]), ...]), ...] in canonical order."""
    raw = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"],
        check=True, capture_output=True,
    ).stdout.decode("ascii")  # the KJV text is pure ASCII; fail loudly if not
    books = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = VERSE_RE.match(line)
        if not m:
            raise SystemExit(f"unexpected line from bible: {line!r}")
        book, chap, verse, text = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        text = " ".join(text.split())
        if not books or books[-1][0] != book:
            books.append((book, []))
        chapters = books[-1][1]
        if not chapters or chapters[-1][0] != chap:
            chapters.append((chap, []))
        chapters[-1][1].append(text)
        if len(chapters[-1][1]) != verse:
            raise SystemExit(f"verse numbering gap at {line[:20]!r}")
    return books


def book_text(chapters):
    return "\n\n".join("\n".join(verses) for _, verses in chapters) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder for train.txt and revelation.txt")
    args = ap.parse_args()

    books = read_bible()
    n_verses = sum(len(v) for _, chs in books for _, v in chs)
    if len(books) != 66 or n_verses != 31102:
        raise SystemExit(f"expected 66 books / 31102 verses, got {len(books)} / {n_verses}")
    names = [b for b, _ in books]
    if names[-1] != HELD_OUT:
        raise SystemExit(f"last book is {names[-1]!r}, expected {HELD_OUT!r}")

    train_books = [book_text(chs) for b, chs in books if b != HELD_OUT]
    held_out = [book_text(chs) for b, chs in books if b == HELD_OUT][0]
    train = ("\n" + EOT + "\n").join(train_books)

    os.makedirs(args.out, exist_ok=True)
    outputs = {"train.txt": train, "revelation.txt": held_out}
    print(f"bible-kjv {package_version('bible-kjv')}, bible-kjv-text {package_version('bible-kjv-text')}")
    print(f"{len(books)} books, {n_verses} verses; train = {len(train_books)} books, held out = {HELD_OUT}")
    for name, text in outputs.items():
        data = text.encode("utf-8")
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Converts a plain-text README whose headings are underlined with '=' or '-' into a DOCX (python-docx):
heading lines become Heading 1, blank-line separated blocks become paragraphs (lines joined by spaces,
indented blocks kept verbatim). Used by make_docs.sh; the text is unchanged apart from line joining."""
import sys

import docx


def main(src, dst):
    lines = open(src, encoding="utf-8").read().split("\n")
    d = docx.Document()
    d.core_properties.title = "gpg-agent README.Debian"
    block = []

    def flush():
        if block:
            if all(l.startswith("    ") for l in block):
                d.add_paragraph("\n".join(l.strip() for l in block))
            else:
                d.add_paragraph(" ".join(l.strip() for l in block))
            block.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and nxt.strip() and set(nxt.strip()) <= {"=", "-"} and len(nxt.strip()) >= 3:
            flush()
            d.add_heading(line.strip(), level=1)
            i += 2
            continue
        if not line.strip():
            flush()
        else:
            block.append(line)
        i += 1
    flush()
    d.save(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

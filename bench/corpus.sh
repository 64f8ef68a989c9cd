#!/usr/bin/env bash
# Builds the PDF benchmark corpus from real documents: the LaTeX package manuals shipped in two Debian
# documentation packages (166 PDFs written by pdfTeX with Type 1 fonts and ToUnicode maps). Downloaded once
# into the cache; prints the corpus directory.
set -euo pipefail
CACHE=${DOCPIPE_CACHE_DIR:-$HOME/.cache/docpipe}/bench
OUT=$CACHE/pdf-corpus
PACKAGES=(texlive-latex-recommended-doc texlive-fonts-recommended-doc)
# Files above this size are left out (MAX_FILE_SIZE default, so the ingestion run can upload every one).
MAX_BYTES=10000000
if [ ! -f "$OUT/.complete" ]; then
  mkdir -p "$CACHE/debs" "$OUT"
  (cd "$CACHE/debs" && for p in "${PACKAGES[@]}"; do ls "$p"_*.deb >/dev/null 2>&1 || apt-get download "$p" >&2; done)
  tmp=$(mktemp -d)
  for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$tmp"; done
  find "$tmp" -name '*.pdf' -type f -size -"$MAX_BYTES"c -print0 | while IFS= read -r -d '' f; do
    cp "$f" "$OUT/$(basename "$(dirname "$f")")-$(basename "$f")"
  done
  rm -rf "$tmp"
  touch "$OUT/.complete"
fi
echo "$OUT"

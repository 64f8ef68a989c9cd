#!/usr/bin/env bash
# Rebuilds bench/qa/docs/ from its public sources (see PROVENANCE.md). The result is committed, so this only
# documents and reproduces the derivation; run.py never calls it. Idempotent: downloads are cached under
# $HOME/.cache/docpipe/bench/qa (pinned versions), and the docs are rewritten from them.
# Needs: pip, apt-get, dpkg-deb, pdftoppm (poppler-utils); a venv with python-docx and img2pdf is made in the cache.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${DOCPIPE_CACHE_DIR:-$HOME/.cache/docpipe}/bench/qa
DOCS=$HERE/docs
mkdir -p "$CACHE/dl" "$CACHE/src" "$DOCS"/{pdf,scanned,image,docx,odt,pptx,xlsx,csv,markdown,text}

# PyPI sdists (test data) and one wheel (scikit-learn's packaged datasets), pinned.
SDISTS=(python-docx==1.2.0 python-pptx==1.0.2 odfpy==1.4.1)
for s in "${SDISTS[@]}"; do
  n=${s%%==*}; v=${s##*==}; f=$(ls "$CACHE/dl/" | grep -i "^${n//-/_}-$v.tar.gz" || true)
  [ -n "$f" ] || pip download -q --no-deps --no-binary :all: "$s" -d "$CACHE/dl"
done
ls "$CACHE"/dl/scikit_learn-1.5.2-*.whl >/dev/null 2>&1 ||
  pip download -q --no-deps --only-binary :all: --python-version 3.11 --platform manylinux2014_x86_64 scikit-learn==1.5.2 -d "$CACHE/dl"
for f in "$CACHE"/dl/*.tar.gz; do tar xzf "$f" -C "$CACHE/src"; done
(cd "$CACHE/src" && unzip -o -q "$CACHE"/dl/scikit_learn-1.5.2-*.whl 'sklearn/datasets/data/*')

# Debian packages, pinned by version (bookworm): the LaTeX manuals (bench/corpus.sh downloads the same .deb)
# (reused from bench/corpus.sh's cache when there) and three installed documentation files, fetched as .debs so the bytes do not depend on this machine.
DEBS=(texlive-latex-recommended-doc=2022.20230122-3 base-passwd=3.6.1 man-db=2.11.2-2 gpg-agent=2.2.40-1.1+deb12u2)
for d in "${DEBS[@]}"; do
  p=${d%%=*}
  [ "$p" = texlive-latex-recommended-doc ] && ls "$CACHE"/../debs/${p}_2022.20230122-3_all.deb >/dev/null 2>&1 &&
    ! ls "$CACHE/dl/${p}_"*.deb >/dev/null 2>&1 && cp "$CACHE"/../debs/${p}_2022.20230122-3_all.deb "$CACHE/dl/"
  ls "$CACHE/dl/${p}_"*.deb >/dev/null 2>&1 || (cd "$CACHE/dl" && apt-get download "$d")
done
for d in "$CACHE"/dl/*.deb; do dpkg-deb -x "$d" "$CACHE/src/deb"; done
TL=$CACHE/src/deb/usr/share/doc/texlive-doc/latex

# A venv for the two conversions (python-docx writes the converted DOCX, img2pdf wraps the scan).
VENV=$CACHE/venv-docs
"$VENV/bin/python" -c 'import docx, img2pdf' 2>/dev/null || {
  python3 -m venv "$VENV"; "$VENV/bin/pip" install -q python-docx==1.2.0 img2pdf==0.6.3; }

# PDF with text: three manuals as shipped.
cp "$TL/parskip/parskip.pdf" "$DOCS/pdf/parskip.pdf"
cp "$TL/underscore/underscore.pdf" "$DOCS/pdf/underscore.pdf"
cp "$TL/anysize/anysize.pdf" "$DOCS/pdf/anysize.pdf"
# Scanned PDF: pages 1-2 of the setspace manual rendered at 200 dpi grey and wrapped back as image-only PDF.
tmp=$(mktemp -d)
pdftoppm -r 200 -gray -png -f 1 -l 2 "$TL/setspace/setspace-doc.pdf" "$tmp/setspace"
"$VENV/bin/img2pdf" --producer '' --creationdate '2026-12-02T00:00:00Z' --moddate '2026-12-02T00:00:00Z' \
  "$tmp/setspace-1.png" "$tmp/setspace-2.png" -o "$DOCS/scanned/setspace-scan.pdf"
# Image: page 1 of the everyshi manual at 150 dpi grey.
pdftoppm -r 150 -gray -png -f 1 -l 1 "$TL/everyshi/everyshi.pdf" "$tmp/everyshi"
cp "$tmp/everyshi-1.png" "$DOCS/image/everyshi-page1.png"
rm -rf "$tmp"

# DOCX: one python-docx test file as shipped, and gpg-agent's README.Debian converted (headings = the lines
# underlined with '=', paragraphs = blank-line separated blocks, indented blocks kept as one paragraph each).
cp "$CACHE/src/python_docx-1.2.0/features/steps/test_files/par-hlink-frags.docx" "$DOCS/docx/par-hlink-frags.docx"
"$VENV/bin/python" "$HERE/readme_to_docx.py" "$CACHE/src/deb/usr/share/doc/gpg-agent/README.Debian" \
  "$DOCS/docx/gpg-agent-README.Debian.docx"

# ODT: odfpy's API manual and one of its test documents, as shipped.
cp "$CACHE/src/odfpy-1.4.1/api-for-odfpy.odt" "$DOCS/odt/api-for-odfpy.odt"
cp "$CACHE/src/odfpy-1.4.1/tests/examples/serious_poem.odt" "$DOCS/odt/serious_poem.odt"

# PPTX: python-pptx test files, as shipped.
for f in txt-fit-text txt-paragraph-spacing; do
  cp "$CACHE/src/python_pptx-1.0.2/features/steps/test_files/$f.pptx" "$DOCS/pptx/$f.pptx"; done
cp "$CACHE/src/python_pptx-1.0.2/tests/test_files/test_slides.pptx" "$DOCS/pptx/test_slides.pptx"

# XLSX: python-calamine test data as kept in /work/shared/data/calamine (python-calamine's tests/data).
SHARED=${DOCPIPE_SHARED_DATA:-/work/shared/data}
cp "$SHARED/calamine/calamine_table_multiple.xlsx" "$DOCS/xlsx/table_multiple.xlsx"
cp "$SHARED/calamine/calamine_any_sheets.xlsx" "$DOCS/xlsx/any_sheets.xlsx"

# CSV: scikit-learn's packaged datasets, as shipped.
for f in iris boston_house_prices wine_data; do
  cp "$CACHE/src/sklearn/datasets/data/$f.csv" "$DOCS/csv/$f.csv"; done

# Markdown: odfpy's README.md and man-db's README.md (gunzipped from the .deb).
cp "$CACHE/src/odfpy-1.4.1/README.md" "$DOCS/markdown/odfpy-README.md"
gzip -dc "$CACHE/src/deb/usr/share/doc/man-db/README.md.gz" > "$DOCS/markdown/man-db-README.md"

# Plain text: base-passwd's README (renamed .txt so the type is plain text).
cp "$CACHE/src/deb/usr/share/doc/base-passwd/README" "$DOCS/text/base-passwd-README.txt"

# Audio is not copied: questions point at fixtures/audio/ (see PROVENANCE.md).
du -sh "$DOCS"

#!/usr/bin/env python3
"""Generates the hostile-input suite's crafted files (Python 3 standard library only).

Each file is small on the wire and built to exhaust an extractor that trusts it; none is committed (they are
made at test time). Usage: make_files.py OUT_DIR [NAME ...]; with no names every file is made. Prints one
line per file: name, size in bytes.

Classes (from issue 20):
  cmap_range.pdf        a ToUnicode CMap whose one bfrange claims <00000000> <FFFFFFFF> (4 billion codes)
  many_paragraphs.docx  7 million empty paragraphs, compression ratio under 100 (honest sizes)
  huge_dimension.xlsx   <dimension ref="A1:XFD1048576"/> with cells in both corners
  sst_bomb.xlsx         a shared-string table claiming 10^12 unique strings (a reserve() of terabytes)
  flate_bomb.pdf        a 512 MiB content stream in 0.5 MB of FlateDecode
  wide.csv              100,000 columns, 10 rows
  huge.png              a valid 20000 x 20000 grayscale PNG
  one_line.txt          10,000,000 bytes of words on a single line
  objstm_bomb.pdf       an object stream (/Type /ObjStm) claiming a million objects, inflating to 512 MiB
  form_fanout.pdf       form XObjects nested 9 deep, each drawing the next 10 times (10^9 draws)
  big_text.pdf          50 MB of text operators on 400 pages in 2 MB of FlateDecode
"""

import io
import random
import struct
import sys
import zipfile
import zlib
from pathlib import Path

MIB = 1024 * 1024


def pdf(objects, pages_obj=2):
    """A PDF with the given object bodies (1-based), an xref table and a trailer rooted at object 1."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i)
        out.write(body)
        out.write(b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def stream(data, extra=b""):
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def cmap_range_pdf():
    cmap = (
        b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        b"/CMapName /Hostile def\n/CMapType 2 def\n"
        b"1 begincodespacerange\n<00> <FF>\nendcodespacerange\n"
        b"1 beginbfrange\n<00000000> <FFFFFFFF> <0041>\nendbfrange\n"
        b"endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    )
    content = b"BT /F1 24 Tf 72 700 Td (Hostile CMap range) Tj ET"
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream(content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        stream(cmap),
    ])


def flate_bomb_pdf(inflated=512 * MIB):
    comp = zlib.compressobj(9)
    chunk = b" " * MIB
    parts = [comp.compress(chunk) for _ in range(inflated // MIB)]
    parts.append(comp.flush())
    data = b"".join(parts)
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        stream(data, b"/Filter /FlateDecode"),
    ])


def objstm_bomb_pdf(inflated=512 * MIB):
    comp = zlib.compressobj(9)
    header = b" ".join(b"%d 0" % (10 + i) for i in range(1000)) + b" "
    parts = [comp.compress(header)]
    parts += [comp.compress(b"0" * MIB) for _ in range(inflated // MIB)]
    parts.append(comp.flush())
    data = b"".join(parts)
    content = b"BT /F1 24 Tf 72 700 Td (Object stream bomb) Tj ET"
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        stream(content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        stream(data, b"/Type /ObjStm /N 1000000 /First %d /Filter /FlateDecode" % len(header)),
    ])


def form_fanout_pdf(depth=9, fanout=10):
    # Object 4 is the page's content; forms are objects 6 .. 6+depth-1; the last one shows text.
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /X 6 0 R >> >> >>",
        stream(b"/X Do"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for level in range(depth):
        obj = 6 + level
        if level + 1 < depth:
            body = b" ".join([b"/X Do"] * fanout)
            res = b"/Resources << /Font << /F1 5 0 R >> /XObject << /X %d 0 R >> >>" % (obj + 1)
        else:
            body = b"BT /F1 12 Tf 72 700 Td (fan out) Tj ET"
            res = b"/Resources << /Font << /F1 5 0 R >> >>"
        objects.append(stream(body, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] " + res))
    return pdf(objects)


def big_text_pdf(pages=400, per_page=125_000):
    rng = random.Random(50)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        None,  # the page tree, once the pages are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for _ in range(pages):
        ops = []
        n = 0
        while n < per_page:
            line = " ".join(rng.choice(words) for _ in range(12)).encode()
            ops.append(b"BT /F1 10 Tf 40 %d Td (%s) Tj ET" % (50 + len(ops) % 650, line))
            n += len(line)
        page_obj = len(objects) + 1
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (page_obj + 1)
        )
        objects.append(stream(zlib.compress(b"\n".join(ops), 9), b"/Filter /FlateDecode"))
        kids.append(b"%d 0 R" % page_obj)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    return pdf(objects)


CONTENT_TYPES_DOCX = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
ROOT_RELS_DOCX = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="word/document.xml"/></Relationships>'
)


def many_paragraphs_docx(paragraphs=7_000_000):
    # Random whitespace between the paragraphs keeps the deflate ratio honest (well under 100).
    rng = random.Random(20)
    seps = rng.choices([" ", "\n", "\t", "  ", "\r\n", ""], k=paragraphs)
    body = "".join("<w:p/>" + s for s in seps)
    xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
        + body
        + "</w:body></w:document>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES_DOCX)
        z.writestr("_rels/.rels", ROOT_RELS_DOCX)
        z.writestr("word/document.xml", xml)
    return out.getvalue()


def xlsx(sheet_xml, shared_strings=None):
    ct = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        + (
            '<Override PartName="/xl/sharedStrings.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
            if shared_strings
            else ""
        )
        + "</Types>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>'
    )
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    wb_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" '
        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
        'Target="worksheets/sheet1.xml"/>'
        + (
            '<Relationship Id="rId2" '
            'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
            'Target="sharedStrings.xml"/>'
            if shared_strings
            else ""
        )
        + "</Relationships>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", ct)
        z.writestr("_rels/.rels", rels)
        z.writestr("xl/workbook.xml", workbook)
        z.writestr("xl/_rels/workbook.xml.rels", wb_rels)
        z.writestr("xl/worksheets/sheet1.xml", sheet_xml)
        if shared_strings:
            z.writestr("xl/sharedStrings.xml", shared_strings)
    return out.getvalue()


def sheet(rows_xml, dimension):
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="{dimension}"/><sheetData>{rows_xml}</sheetData></worksheet>'
    )


def huge_dimension_xlsx():
    rows = (
        '<row r="1"><c r="A1" t="inlineStr"><is><t>top left</t></is></c></row>'
        '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>bottom right</t></is></c></row>'
    )
    return xlsx(sheet(rows, "A1:XFD1048576"))


def sst_bomb_xlsx():
    sst = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'count="1000000000000" uniqueCount="1000000000000"><si><t>one</t></si></sst>'
    )
    rows = '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
    return xlsx(sheet(rows, "A1"), shared_strings=sst)


def wide_csv(columns=100_000, rows=10):
    lines = []
    for r in range(rows):
        lines.append(",".join(f"r{r}c{c}" for c in range(columns)))
    return ("\n".join(lines) + "\n").encode()


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def huge_png(side=20_000):
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * side  # filter byte "none", then white pixels
    block = row * 50
    parts = [comp.compress(block) for _ in range(side // 50)]
    parts.append(comp.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def one_line_txt(size=10_000_000):
    rng = random.Random(7)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    out = []
    n = 0
    while n < size:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
    return " ".join(out).encode()[:size]


MAKERS = {
    "cmap_range.pdf": cmap_range_pdf,
    "many_paragraphs.docx": many_paragraphs_docx,
    "huge_dimension.xlsx": huge_dimension_xlsx,
    "sst_bomb.xlsx": sst_bomb_xlsx,
    "flate_bomb.pdf": flate_bomb_pdf,
    "wide.csv": wide_csv,
    "huge.png": huge_png,
    "one_line.txt": one_line_txt,
    "objstm_bomb.pdf": objstm_bomb_pdf,
    "form_fanout.pdf": form_fanout_pdf,
    "big_text.pdf": big_text_pdf,
}


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    names = sys.argv[2:] or list(MAKERS)
    for name in names:
        data = MAKERS[name]()
        (out / name).write_bytes(data)
        print(name, len(data))


if __name__ == "__main__":
    main()

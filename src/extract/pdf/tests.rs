use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::extract::{Format, Limits};

macro_rules! fixture {
    ($name:literal) => {
        (
            &include_bytes!(concat!("../../../fixtures/pdf/", $name))[..],
            include_str!(concat!("../../../fixtures/pdf/", $name, ".expected.txt")),
        )
    };
}

const QUICK: Duration = Duration::from_secs(5);

/// Progress reports: (done, total, unit).
type Reports = Vec<(u64, u64, String)>;

/// Runs the extractor with `limits`, returning the result and the progress reports.
fn run(bytes: &[u8], limits: &Limits) -> (Result<Document, ExtractError>, Reports) {
    let reports = Mutex::new(Vec::new());
    let progress = |done, total, unit: &'static str| {
        reports
            .lock()
            .expect("lock")
            .push((done, total, unit.to_owned()));
    };
    let ctx = Context {
        limits,
        deadline: Instant::now() + Duration::from_secs(120),
        progress: &progress,
    };
    let input = Input {
        bytes,
        format: Format::Pdf,
    };
    let result = crate::extract::extract(&input, &ctx);
    (result, reports.into_inner().expect("lock"))
}

fn extract_ok(bytes: &[u8]) -> Document {
    run(bytes, &Limits::default()).0.expect("extracts")
}

fn pages_of(doc: &Document) -> Vec<(u32, bool)> {
    let mut pages: Vec<(u32, bool)> = doc
        .segments
        .iter()
        .map(|s| match s.location {
            Location::Page { page, ocr } => (page, ocr),
            ref other => panic!("unexpected location {other:?}"),
        })
        .collect();
    pages.dedup();
    pages
}

#[test]
fn three_page_text_pdf() {
    let (bytes, expected) = fixture!("text-3page.pdf");
    let (doc, reports) = run(bytes, &Limits::default());
    let doc = doc.expect("extracts");
    assert_eq!(doc.plain_text(), expected);
    assert_eq!(pages_of(&doc), [(1, false), (2, false), (3, false)]);
    assert!(
        doc.segments
            .iter()
            .all(|s| s.kind == SegmentKind::Paragraph)
    );
    assert_eq!(doc.metadata["pages"], json!(3));
    assert_eq!(doc.metadata["ocr_pages"], json!([]));
    assert_eq!(doc.metadata["pages_without_text"], json!([]));
    assert_eq!(doc.metadata["title"], json!("Docpipe Sample Report"));
    assert_eq!(doc.metadata["author"], json!("Docpipe Fixtures"));
    let pages: Vec<_> = reports
        .iter()
        .filter(|r| r.2 == "pages")
        .map(|r| (r.0, r.1))
        .collect();
    assert_eq!(pages, [(1, 3), (2, 3), (3, 3)]);
    // Paragraphs are split on blank lines: the first page has a heading and two paragraphs.
    let first: Vec<&str> = doc
        .segments
        .iter()
        .filter(|s| {
            s.location
                == Location::Page {
                    page: 1,
                    ocr: false,
                }
        })
        .map(|s| s.text.as_str())
        .collect();
    assert!(first.len() >= 2, "{first:?}");
}

#[test]
fn non_latin_text_uses_tounicode() {
    let (bytes, expected) = fixture!("non-latin.pdf");
    assert_eq!(extract_ok(bytes).plain_text(), expected);
}

#[test]
fn cjk_text() {
    let (bytes, expected) = fixture!("cjk.pdf");
    assert_eq!(extract_ok(bytes).plain_text(), expected);
}

#[test]
fn empty_user_password_opens() {
    let (bytes, expected) = fixture!("encrypted-empty-password.pdf");
    assert_eq!(extract_ok(bytes).plain_text(), expected);
}

#[test]
fn real_user_password_is_refused() {
    let bytes: &[u8] = include_bytes!("../../../fixtures/pdf/encrypted-user-password.pdf");
    let err = run(bytes, &Limits::default())
        .0
        .expect_err("needs a password");
    assert_eq!(err.code(), "encrypted_pdf");
}

#[test]
fn scanned_page_is_ocrd() {
    let (bytes, expected) = fixture!("scanned.pdf");
    let (doc, reports) = run(bytes, &Limits::default());
    let doc = doc.expect("extracts");
    assert_eq!(doc.plain_text(), expected);
    assert_eq!(pages_of(&doc), [(1, true)]);
    assert_eq!(doc.metadata["ocr_pages"], json!([1]));
    assert_eq!(doc.metadata["pages_without_text"], json!([]));
    assert!(reports.contains(&(1, 1, OCR_UNIT.to_owned())));
}

#[test]
fn scanned_page_without_ocr_is_listed() {
    let (bytes, _) = fixture!("scanned.pdf");
    for limits in [
        Limits {
            ocr: OcrMode::Off,
            ..Limits::default()
        },
        Limits {
            max_ocr_pages: 0,
            ..Limits::default()
        },
    ] {
        let doc = run(bytes, &limits).0.expect("extracts");
        assert!(doc.segments.is_empty());
        assert_eq!(doc.metadata["ocr_pages"], json!([]));
        assert_eq!(doc.metadata["pages_without_text"], json!([1]));
    }
}

#[test]
fn too_many_pages() {
    let (bytes, _) = fixture!("text-3page.pdf");
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let err = run(bytes, &limits).0.expect_err("over the limit");
    assert_eq!(err.code(), "limit_exceeded");
}

#[test]
fn past_deadline_times_out() {
    let (bytes, _) = fixture!("text-3page.pdf");
    let limits = Limits::default();
    let progress = |_, _, _: &'static str| {};
    let ctx = Context {
        limits: &limits,
        deadline: Instant::now(),
        progress: &progress,
    };
    let input = Input {
        bytes,
        format: Format::Pdf,
    };
    let err = PdfExtractor
        .extract(&input, &ctx)
        .expect_err("deadline passed");
    assert_eq!(err.code(), "extraction_timeout");
}

/// Builds a PDF from object bodies (object n is `objects[n - 1]`) with a correct xref table.
fn build_pdf(objects: &[&str]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn stream(dict: &str, content: &str) -> String {
    format!(
        "<< {dict} /Length {} >>\nstream\n{content}\nendstream",
        content.len()
    )
}

const FONT: &str = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

/// Checks a crafted file is handled quickly, returning what the extractor said.
fn crafted(bytes: &[u8]) -> Result<Document, ExtractError> {
    let started = Instant::now();
    let (result, _) = run(
        bytes,
        &Limits {
            ocr: OcrMode::Off,
            ..Limits::default()
        },
    );
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    result
}

#[test]
fn hand_built_pdf_reads() {
    let content = "BT /F1 12 Tf 72 700 Td (Hello crafted world) Tj ET";
    let pdf = build_pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        &stream("", content),
        FONT,
    ]);
    assert_eq!(
        crafted(&pdf).expect("reads").plain_text(),
        "Hello crafted world"
    );
}

#[test]
fn page_tree_loop_is_corrupt() {
    // The intermediate Pages node lists the root as a kid: /Kids points back to an ancestor.
    let pdf = build_pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Pages /Parent 2 0 R /Kids [4 0 R 2 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] >>",
    ]);
    let err = crafted(&pdf).expect_err("loop");
    assert_eq!(err.code(), "corrupt_file");
    assert!(err.to_string().contains("loops"), "{err}");
}

#[test]
fn parent_loop_is_corrupt() {
    // The page's /Parent is the page itself: pdf-extract would recurse forever looking for /MediaBox.
    let pdf = build_pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 3 0 R >>",
    ]);
    assert_eq!(crafted(&pdf).expect_err("loop").code(), "corrupt_file");
}

#[test]
fn self_referencing_object_is_handled() {
    // Object 2 is a reference to itself; the catalog's /Pages resolves to nothing.
    let pdf = build_pdf(&["<< /Type /Catalog /Pages 2 0 R >>", "2 0 R"]);
    assert_eq!(crafted(&pdf).expect_err("no pages").code(), "corrupt_file");
}

#[test]
fn self_drawing_form_xobject_does_not_recurse() {
    // Form X1 draws itself with `Do` (directly) and X2 inherits resources that name it (indirectly).
    let content = "BT /F1 12 Tf 72 700 Td (Outside the form) Tj ET /X1 Do /X2 Do";
    let pdf = build_pdf(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources 7 0 R >>",
        &stream("", content),
        &stream(
            "/Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources 7 0 R",
            "/X1 Do",
        ),
        &stream("/Type /XObject /Subtype /Form /BBox [0 0 10 10]", "/X2 Do"),
        "<< /Font << /F1 8 0 R >> /XObject << /X1 5 0 R /X2 6 0 R >> >>",
        FONT,
    ]);
    let doc = crafted(&pdf).expect("the page still reads");
    assert_eq!(doc.plain_text(), "Outside the form");
}

#[test]
fn truncated_file_is_corrupt() {
    let (bytes, _) = fixture!("text-3page.pdf");
    let result = crafted(&bytes[..bytes.len() / 3]);
    // lopdf may recover some objects; it must either fail cleanly or return sane output.
    if let Err(err) = result {
        assert_eq!(err.code(), "corrupt_file");
    }
    assert_eq!(
        crafted(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
            .expect_err("cut")
            .code(),
        "corrupt_file"
    );
}

#[test]
fn random_bytes_are_corrupt() {
    // A fixed xorshift sequence keeps the test deterministic.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = b"%PDF-1.4\n".to_vec();
    for _ in 0..64 * 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push(state as u8);
    }
    assert_eq!(crafted(&bytes).expect_err("garbage").code(), "corrupt_file");
}

#[test]
fn deeply_nested_arrays_do_not_overflow() {
    let nested = format!(
        "<< /Type /Catalog /Pages 2 0 R /Junk {}{} >>",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let pdf = build_pdf(&[&nested, "<< /Type /Pages /Kids [] /Count 0 >>"]);
    // Either outcome is fine; reaching here without a stack overflow is the point.
    let _ = crafted(&pdf);
}

/// Word multiset F1 between two texts (whitespace-separated tokens).
fn word_f1(ours: &str, reference: &str) -> f64 {
    use std::collections::HashMap;
    let count = |text: &str| {
        let mut words: HashMap<String, i64> = HashMap::new();
        for w in text.split_whitespace() {
            *words.entry(w.to_owned()).or_default() += 1;
        }
        words
    };
    let (a, b) = (count(ours), count(reference));
    let common: i64 = a
        .iter()
        .map(|(w, n)| (*n).min(b.get(w).copied().unwrap_or(0)))
        .sum();
    let (na, nb): (i64, i64) = (a.values().sum(), b.values().sum());
    if na == 0 || nb == 0 {
        return if na == nb { 1.0 } else { 0.0 };
    }
    let (p, r) = (common as f64 / na as f64, common as f64 / nb as f64);
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Speed and quality against pdftotext on real PDFs:
/// `DOCPIPE_PDF_BENCH=a.pdf:b.pdf cargo test --release --lib pdf::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore = "needs PDFs named in DOCPIPE_PDF_BENCH"]
fn bench_against_pdftotext() {
    let files = std::env::var("DOCPIPE_PDF_BENCH").expect("DOCPIPE_PDF_BENCH");
    let limits = Limits {
        ocr: OcrMode::Off,
        ..Limits::default()
    };
    let (mut all_pages, mut all_ours, mut all_theirs) = (0usize, 0.0f64, 0.0f64);
    for path in files.split(':') {
        let bytes = std::fs::read(path).expect("read");
        let started = Instant::now();
        let doc = run(&bytes, &limits).0.expect("extracts");
        let ours = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let reference = std::process::Command::new("pdftotext")
            .args([path, "-"])
            .output()
            .expect("pdftotext");
        let theirs = started.elapsed().as_secs_f64();
        let reference = String::from_utf8_lossy(&reference.stdout);
        let pages = doc.metadata["pages"].as_u64().expect("pages") as usize;
        let f1 = word_f1(&doc.plain_text(), &reference);
        println!(
            "{path}: {pages} pages, ours {:.0} pages/s, pdftotext {:.0} pages/s, word F1 {f1:.4}",
            pages as f64 / ours,
            pages as f64 / theirs
        );
        (all_pages, all_ours, all_theirs) =
            (all_pages + pages, all_ours + ours, all_theirs + theirs);
    }
    println!(
        "total {all_pages} pages: ours {:.0} pages/s, pdftotext {:.0} pages/s",
        all_pages as f64 / all_ours,
        all_pages as f64 / all_theirs
    );
}

#[test]
fn ligatures_are_expanded() {
    let mut out = String::new();
    for piece in [
        "\u{FB01}rst ",
        "di\u{FB00}er ",
        "\u{FB02}y \u{FB03} \u{FB04} \u{FB05}\u{FB06}",
    ] {
        text::push_expanded(&mut out, piece);
    }
    assert_eq!(out, "first differ fly ffi ffl stst");
    // Other compatibility characters are left alone (no NFKC).
    let mut out = String::new();
    text::push_expanded(&mut out, "x\u{00B2} \u{2126} \u{FB13}");
    assert_eq!(out, "x\u{00B2} \u{2126} \u{FB13}");
}

#[test]
fn hyphenated_line_ends_are_joined() {
    let join = |s: &str| text::dehyphenate(s).unwrap_or_else(|| s.to_owned());
    assert_eq!(
        join("the table pre-\nsented here\nnext line"),
        "the table presented\nhere\nnext line"
    );
    // The next line holding only the rest of the word is merged, not left blank.
    assert_eq!(join("a pre-\nsented\nb"), "a presented\nb");
    assert_eq!(join("a pre- \n  sented b"), "a presented\nb");
    assert_eq!(join("\\exp_-\nnot:n"), "\\exp_not:n");
    // Hyphens inside a line, before a capital or a digit, dashes and lone hyphens stay.
    for kept in [
        "a one-off deal",
        "see X-\nRay",
        "pages 1-\n12",
        "a --\nb",
        "list\n-\nitem",
        "para-\n\nnext",
    ] {
        assert_eq!(join(kept), kept);
        assert!(text::dehyphenate("no hyphen\nhere").is_none());
    }
}

#[test]
fn spacing_between_glyphs() {
    use text::{Break, Pen, break_before};
    let pen = |end, size, letter| Pen {
        end,
        dir: (1.0, 0.0),
        size,
        letter,
    };
    let right = (1.0, 0.0);
    let p = pen((100.0, 500.0), 10.0, true);
    // Touching glyphs, a word gap, a small overlap (kerning, accents).
    assert_eq!(
        break_before(&p, (100.2, 500.0), right, 10.0, true),
        Break::None
    );
    assert_eq!(
        break_before(&p, (102.5, 500.0), right, 10.0, true),
        Break::Space
    );
    assert_eq!(
        break_before(&p, (96.0, 500.0), right, 10.0, true),
        Break::None
    );
    // Far back on the same baseline (a margin line number), next line, next paragraph.
    assert_eq!(
        break_before(&p, (20.0, 500.0), right, 10.0, true),
        Break::Space
    );
    assert_eq!(
        break_before(&p, (20.0, 488.0), right, 10.0, true),
        Break::Line
    );
    assert_eq!(
        break_before(&p, (20.0, 470.0), right, 10.0, true),
        Break::Paragraph
    );
    // Out of a raised footnote mark into text; into a superscript (x², mc²) stays one word; a raised
    // letter inside a word (the A of the LaTeX logo) too.
    let mark = pen((100.0, 504.0), 7.0, false);
    assert_eq!(
        break_before(&mark, (100.0, 500.0), right, 10.0, true),
        Break::Space
    );
    assert_eq!(
        break_before(&p, (100.0, 504.0), right, 7.0, false),
        Break::None
    );
    let raised_a = pen((100.0, 502.0), 7.0, true);
    assert_eq!(
        break_before(&raised_a, (100.0, 500.0), right, 10.0, true),
        Break::None
    );
    // Text rotated by 90 degrees reads along its own direction; a change of direction breaks the line.
    let up = (0.0, 1.0);
    let r = Pen {
        end: (300.0, 100.0),
        dir: up,
        size: 10.0,
        letter: true,
    };
    assert_eq!(
        break_before(&r, (300.0, 100.2), up, 10.0, true),
        Break::None
    );
    assert_eq!(
        break_before(&r, (300.0, 103.0), up, 10.0, true),
        Break::Space
    );
    assert_eq!(
        break_before(&r, (300.0, 103.0), right, 10.0, true),
        Break::Line
    );
}

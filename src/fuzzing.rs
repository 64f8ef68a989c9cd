//! Entry points for the fuzz targets under `fuzz/` (cargo-fuzz, libFuzzer) and for the smoke run in this
//! module's tests: one plain function per target that takes arbitrary bytes and must never panic, abort or
//! run unbounded.
//!
//! The extractor functions call the real in-process extractor for a format, with [`Limits::default`], OCR
//! off and a [`DEADLINE`], and ignore its result: an `Err` is the expected answer to most fuzzed inputs.
//! Unlike [`crate::extract::extract`] they do not catch panics, so a panic in docpipe's own code or in a
//! parser it calls outside a deliberate `catch_unwind` (as the PDF extractor has around lopdf and
//! pdf-extract, and the sheet extractor around calamine) reaches the fuzzer as a crash. In production
//! extraction runs in a worker process under rlimits, which would turn such a crash into
//! `extractor_crashed`; here it is a bug to fix.
//!
//! [`chunk`] builds a [`Document`] from the bytes and checks the chunker's cheap invariants.
//!
//! [`TARGETS`] lists every target with the fixture extensions that seed its corpus (`fuzz/run.sh` copies
//! the same files).

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use crate::chunk::{ChunkConfig, chunk_document, reassemble};
use crate::extract::{
    Context, ExtractError, Format, Input, Limits, OcrMode, bounds, detect, extractor_for,
};
use crate::types::{Document, Location, Segment, SegmentKind};

/// Wall-clock budget for one fuzzed input; an extractor that ignores it is caught by libFuzzer's
/// `-timeout` (set above it in `fuzz/run.sh`).
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A fuzz target: its name (as under `fuzz/fuzz_targets/`), the function it runs, and the fixture file
/// extensions that seed its corpus.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: &'static [&'static str],
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pdf",
        run: pdf,
        seeds: &["pdf"],
    },
    Target {
        name: "docx",
        run: docx,
        seeds: &["docx"],
    },
    Target {
        name: "pptx",
        run: pptx,
        seeds: &["pptx"],
    },
    Target {
        name: "odt",
        run: odt,
        seeds: &["odt"],
    },
    Target {
        name: "xlsx",
        run: xlsx,
        seeds: &["xlsx", "xlsb"],
    },
    Target {
        name: "xls",
        run: xls,
        seeds: &["xls"],
    },
    Target {
        name: "ods",
        run: ods,
        seeds: &["ods"],
    },
    Target {
        name: "csv",
        run: csv,
        seeds: &["csv", "tsv"],
    },
    Target {
        name: "html",
        run: html,
        seeds: &["html", "htm"],
    },
    Target {
        name: "text",
        run: text,
        seeds: &[
            "txt", "md", "json", "xml", "fodt", "py", "rs", "js", "ts", "go", "java", "c", "cpp",
            "css", "sh", "sql", "yaml", "toml",
        ],
    },
    Target {
        name: "image",
        run: image,
        seeds: &["png", "jpg", "gif", "bmp", "webp", "tiff"],
    },
    Target {
        name: "audio",
        run: audio,
        seeds: &["wav", "mp3", "flac", "ogg", "m4a", "aac"],
    },
    Target {
        name: "chunk",
        run: chunk,
        seeds: &["txt", "md", "csv", "py"],
    },
    Target {
        name: "multipart",
        run: multipart,
        seeds: &["multipart"],
    },
];

/// The boundary the multipart target's bodies use (its seeds are written with it).
pub const MULTIPART_BOUNDARY: &str = "docpipe-fuzz";

/// The upload routes' multipart parsing (poem's, over multer) on an arbitrary body: parsed or refused,
/// never a panic, and never more file bytes than the body holds.
pub fn multipart(data: &[u8]) {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    let read = RUNTIME.with(|rt| {
        rt.block_on(crate::api::parse_upload_form(
            data.to_vec(),
            MULTIPART_BOUNDARY,
        ))
    });
    if let Ok(n) = read {
        assert!(
            n <= data.len(),
            "{n} file bytes from a {}-byte body",
            data.len()
        );
    }
}

thread_local! {
    /// The last panic on this thread, as "message at file:line", kept by [`quiet_panics`]'s hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the panic hook once with one that only remembers the panic.
///
/// libfuzzer-sys installs a hook that aborts on every panic, before unwinding, which would also report the
/// panics the PDF extractor deliberately catches inside lopdf and pdf-extract (they fail the file as
/// corrupt, as in production). With this hook those stay caught; a panic that escapes the extractor is
/// printed by [`guarded`] and re-raised, and libfuzzer-sys aborts on it. Not installed in tests, where the
/// default hook's messages are captured per test.
fn quiet_panics() {
    #[cfg(not(test))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let what = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{what}{at}")));
            }));
        });
    }
}

/// Runs `f`; a panic escaping it is printed (with the input's size) and re-raised.
fn guarded(target: &str, data: &[u8], f: impl FnOnce()) {
    quiet_panics();
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        let what = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "(message printed above)".to_owned());
        eprintln!(
            "docpipe fuzz target {target}: panic on a {}-byte input: {what}",
            data.len()
        );
        resume_unwind(panic);
    }
}

/// Runs the extractor for `format` on `data` in this process, with the default limits, OCR off and a
/// deadline of [`DEADLINE`], then the same bounding step as production; panics are not caught.
pub fn run_extractor(format: Format, data: &[u8]) -> Result<Document, ExtractError> {
    let limits = Limits {
        ocr: OcrMode::Off,
        timeout_secs: DEADLINE.as_secs(),
        ..Limits::default()
    };
    let progress = |_: u64, _: u64, _: &'static str| {};
    let ctx = Context {
        limits: &limits,
        deadline: Instant::now() + DEADLINE,
        progress: &progress,
    };
    let input = Input {
        bytes: data,
        format,
    };
    extractor_for(format)
        .extract(&input, &ctx)
        .and_then(|doc| bounds::bound(doc, &limits))
}

/// [`run_extractor`] with its result dropped and an escaping panic reported, for the fuzz targets.
pub fn extract(format: Format, data: &[u8]) {
    guarded(format.name(), data, || {
        let _ = run_extractor(format, data);
    });
}

/// Runs the extractor of the format `detect` finds for `data` named `fuzz.EXT` when it is one of
/// `formats`, else of `formats[0]`: one target covers a family (images, audio, text encodings) while
/// mutated inputs still reach the decoder their magic bytes name.
fn extract_family(formats: &[Format], ext: &str, data: &[u8]) {
    let format = detect(data, &format!("fuzz.{ext}"))
        .ok()
        .filter(|f| formats.contains(f))
        .unwrap_or(formats[0]);
    extract(format, data);
}

/// PDF (lopdf + pdf-extract, text layer only).
pub fn pdf(data: &[u8]) {
    extract(Format::Pdf, data);
}

/// DOCX.
pub fn docx(data: &[u8]) {
    extract(Format::Docx, data);
}

/// PPTX.
pub fn pptx(data: &[u8]) {
    extract(Format::Pptx, data);
}

/// ODT.
pub fn odt(data: &[u8]) {
    extract(Format::Odt, data);
}

/// XLSX, or XLSB when the bytes say so.
pub fn xlsx(data: &[u8]) {
    extract_family(&[Format::Xlsx, Format::Xlsb], "xlsx", data);
}

/// XLS (OLE2).
pub fn xls(data: &[u8]) {
    extract(Format::Xls, data);
}

/// ODS.
pub fn ods(data: &[u8]) {
    extract(Format::Ods, data);
}

/// CSV and TSV (the delimiter and encoding are sniffed from the bytes).
pub fn csv(data: &[u8]) {
    extract(Format::Csv, data);
    extract(Format::Tsv, data);
}

/// HTML (encoding sniffing, html2text).
pub fn html(data: &[u8]) {
    extract(Format::Html, data);
}

/// Plain text, Markdown, JSON, XML and source code: encoding detection and the line/section splitters.
pub fn text(data: &[u8]) {
    for format in [
        Format::Text,
        Format::Markdown,
        Format::Json,
        Format::Xml,
        Format::Code("python"),
    ] {
        extract(format, data);
    }
}

/// Images (PNG, JPEG, GIF, BMP, WebP, TIFF): header, EXIF and decoding with OCR off.
pub fn image(data: &[u8]) {
    extract_family(
        &[
            Format::Png,
            Format::Jpeg,
            Format::Gif,
            Format::Bmp,
            Format::Webp,
            Format::Tiff,
        ],
        "png",
        data,
    );
}

/// Audio probing (WAV, MP3, FLAC, Ogg, M4A, AAC): container, codec and a full decode.
pub fn audio(data: &[u8]) {
    extract_family(
        &[
            Format::Wav,
            Format::Mp3,
            Format::Flac,
            Format::Ogg,
            Format::M4a,
            Format::Aac,
        ],
        "wav",
        data,
    );
}

/// A deterministic token counter for [`chunk`]: whitespace-separated words plus `[CLS]`/`[SEP]`.
fn words(text: &str) -> usize {
    text.split_whitespace().count() + 2
}

/// About four characters a token plus `[CLS]`/`[SEP]`, like a subword tokenizer, so a long word must be cut
/// between characters (also the chunker's property tests' counter).
pub(crate) fn subwords(text: &str) -> usize {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .count()
        .div_ceil(4)
        + 2
}

/// Segment kinds, picked by a segment's first byte.
const KINDS: [SegmentKind; 11] = [
    SegmentKind::Paragraph,
    SegmentKind::Heading,
    SegmentKind::ListItem,
    SegmentKind::TableHeader,
    SegmentKind::TableRow,
    SegmentKind::Header,
    SegmentKind::Footer,
    SegmentKind::Comment,
    SegmentKind::Note,
    SegmentKind::Code,
    SegmentKind::Transcript,
];

/// Builds a document from fuzzed bytes, shaped like an extractor's output: the first byte picks the
/// location kind of the whole document (as one extractor would) and the token counter; the rest is cut at
/// NUL bytes into segments, each one's first byte picking its kind and the rest being its text (lossy
/// UTF-8).
pub fn document_from_bytes(data: &[u8]) -> Document {
    let (shape, rest) = data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
    let mut segments = Vec::new();
    let mut headings: Vec<String> = Vec::new();
    for (i, part) in rest.split(|b| *b == 0).enumerate() {
        let (kind_byte, body) = part.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        let kind = KINDS[usize::from(kind_byte) % KINDS.len()];
        let text = String::from_utf8_lossy(body).into_owned();
        let n = u32::try_from(i).unwrap_or(u32::MAX);
        let location = match shape % 7 {
            0 => Location::Page {
                page: n / 4 + 1,
                ocr: kind_byte & 0x80 != 0,
            },
            1 => Location::Slide { slide: n / 3 + 1 },
            2 => {
                let sheet = if kind_byte & 0x40 != 0 { "Two" } else { "One" };
                let row = n + 1;
                Location::Cells {
                    sheet: sheet.to_owned(),
                    range: format!("A{row}:C{row}"),
                }
            }
            3 => {
                if kind == SegmentKind::Heading {
                    let level = usize::from(kind_byte >> 5) % 3;
                    headings.truncate(level);
                    headings.push(text.chars().take(40).collect());
                }
                Location::Section {
                    heading_path: headings.clone(),
                    block: n + 1,
                }
            }
            4 => Location::Lines {
                start: 2 * n + 1,
                end: 2 * n + 2,
            },
            5 => Location::Time {
                start: f64::from(n) * 2.5,
                end: f64::from(n) * 2.5 + 2.5,
            },
            _ => Location::Image,
        };
        segments.push(Segment::new(kind, text, location));
    }
    Document {
        segments,
        ..Document::default()
    }
}

/// The text without any whitespace: the chunker keeps every non-whitespace character, in order.
fn ink(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Chunks a document built by [`document_from_bytes`] with the default [`ChunkConfig`] and checks the
/// chunker's documented invariants: every chunk within `max_tokens` and its `token_count` the counter's
/// count of its text, ordinals 0..n, and no text lost ([`reassemble`] gives the document's text back up to
/// whitespace).
pub fn chunk(data: &[u8]) {
    guarded("chunk", data, || {
        let doc = document_from_bytes(data);
        let count: fn(&str) -> usize = if data.first().is_some_and(|b| b & 0x80 != 0) {
            subwords
        } else {
            words
        };
        let cfg = ChunkConfig::default();
        let chunks = chunk_document(&doc, &cfg, &count).expect("the default config is valid");
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.ordinal as usize, i, "ordinals are 0..n");
            assert!(
                c.token_count as usize <= cfg.max_tokens,
                "chunk {i} has {} tokens, more than {}",
                c.token_count,
                cfg.max_tokens
            );
            assert_eq!(
                c.token_count as usize,
                count(&c.text),
                "chunk {i}'s token_count is not its text's count"
            );
        }
        assert_eq!(
            ink(&reassemble(&chunks)),
            ink(&doc.plain_text()),
            "text was lost or changed"
        );
    });
}

#[cfg(test)]
mod tests;

//! Format-specific extractors behind one trait: pure functions from a file's bytes to a [`Document`].
//! Extractors know nothing of HTTP, storage or models. Their only side effects are reading the input and,
//! for OCR, running Tesseract/poppler on it; every one honours the [`Limits`] and the deadline in [`Context`].

pub mod archive;
pub mod audio;
pub mod bounds;
pub mod detect;
pub mod html;
pub mod image;
pub mod ocr;
pub mod odt;
pub mod office;
pub mod pdf;
pub mod pptx;
pub mod sheet;
pub mod text;
pub mod xml;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use detect::{DetectError, Format, detect};

use crate::types::Document;

/// Turns the bytes of one format into a [`Document`].
pub trait Extractor: Send + Sync {
    /// Extracts text with locations. Must not panic on malformed input (a panic is caught and the file
    /// marked failed, but it is still a bug) and must respect `ctx.limits` and `ctx.deadline`.
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError>;
}

/// The file to extract.
pub struct Input<'a> {
    /// The whole file.
    pub bytes: &'a [u8],
    /// The detected format.
    pub format: Format,
}

/// What an extractor may use besides the input: limits, a deadline and a progress callback.
pub struct Context<'a> {
    /// Limits from the category's pipeline definition.
    pub limits: &'a Limits,
    /// When extraction must give up with [`ExtractError::Timeout`].
    pub deadline: Instant,
    /// Called with (done, total, unit) as work advances, e.g. (3, 10, "pages").
    pub progress: &'a (dyn Fn(u64, u64, &'static str) + Sync),
}

impl Context<'_> {
    /// Fails with [`ExtractError::Timeout`] once the deadline has passed; call between units of work.
    pub fn check_deadline(&self) -> Result<(), ExtractError> {
        if Instant::now() >= self.deadline {
            Err(ExtractError::Timeout)
        } else {
            Ok(())
        }
    }

    /// Time left before the deadline (zero when passed); bounds external processes such as Tesseract.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Reports progress.
    pub fn report(&self, done: u64, total: u64, unit: &'static str) {
        (self.progress)(done, total, unit);
    }
}

/// When to OCR: never, always, or only where there is no text layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OcrMode {
    Off,
    On,
    #[default]
    Auto,
}

/// Resource limits for extraction, set per category in `pipelines/*.toml`. Every field has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget for one file, in seconds.
    pub timeout_secs: u64,
    /// Most pages (PDF) or slides (PPTX) read; more fails the file with `limit_exceeded`.
    pub max_pages: u32,
    /// Most bytes a ZIP-based container (DOCX, PPTX, ODT, XLSX, ODS) may inflate to in total.
    pub max_inflated_bytes: u64,
    /// Highest inflated/compressed ratio allowed for any ZIP member (zip-bomb guard, as in Apache POI).
    pub max_inflate_ratio: u64,
    /// Most spreadsheet cells read over all sheets.
    pub max_cells: u64,
    /// Largest image width and height in pixels.
    pub max_image_dimension: u32,
    /// Most bytes an image decoder may allocate.
    pub max_image_alloc_bytes: u64,
    /// Longest audio accepted, in seconds.
    pub max_audio_seconds: f64,
    /// OCR for images and text-less PDF pages.
    pub ocr: OcrMode,
    /// Tesseract language(s), e.g. `eng`.
    pub ocr_language: String,
    /// Resolution PDF pages are rendered at for OCR.
    pub ocr_dpi: u32,
    /// Most PDF pages OCR'd per file (scanned books are expensive); pages past it are marked not OCR'd.
    pub max_ocr_pages: u32,
    /// Most memory (resident, in MiB) the extraction worker process may use for one file; past it the
    /// worker is killed and the file fails with `limit_exceeded`. Its address space is capped a little above.
    pub max_worker_memory_mb: u64,
    /// Most text blocks (paragraphs, rows, list items, slides' shapes) one file may yield; DOCX paragraphs,
    /// table rows and cells are counted before the document is parsed.
    pub max_segments: u64,
    /// Most bytes of extracted text per file.
    pub max_text_bytes: u64,
    /// Most bytes one PDF stream may inflate to (a FlateDecode bomb fails the file); all streams of a PDF
    /// together may inflate to at most `max_inflated_bytes`.
    pub max_stream_bytes: u64,
    /// Most character codes a PDF font's ToUnicode CMap may map (its ranges summed); a font with a larger
    /// map is read without it.
    pub max_cmap_codes: u64,
    /// Most columns read per spreadsheet row (cells to the right are dropped, and the sheet says so).
    pub max_columns: u32,
    /// Most pixels (width x height) an image may have to be decoded and OCR'd.
    pub max_image_pixels: u64,
    /// Most chunks one file is cut into; more fails the file (embedding them would hold the embedder for
    /// minutes).
    pub max_chunks: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout_secs: 300,
            max_pages: 5_000,
            max_inflated_bytes: 512 * 1024 * 1024,
            max_inflate_ratio: 100,
            max_cells: 5_000_000,
            max_image_dimension: 20_000,
            max_image_alloc_bytes: 512 * 1024 * 1024,
            max_audio_seconds: 2.0 * 3600.0,
            ocr: OcrMode::Auto,
            ocr_language: "eng".to_owned(),
            ocr_dpi: 200,
            max_ocr_pages: 100,
            max_worker_memory_mb: 1024,
            max_segments: 1_000_000,
            max_text_bytes: 8 * 1024 * 1024,
            max_stream_bytes: 128 * 1024 * 1024,
            max_cmap_codes: 131_072,
            max_columns: 2_048,
            max_image_pixels: 60_000_000,
            max_chunks: 3_000,
        }
    }
}

/// Why a file could not be extracted. Each variant has a stable machine-readable [`code`](ExtractError::code).
/// Serializable, so it crosses the pipe from an extraction worker process unchanged.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    /// The bytes are not a valid file of the detected format.
    #[error("the file is corrupt or truncated: {0}")]
    Corrupt(String),
    /// A PDF encrypted with a user password.
    #[error("the PDF is encrypted and cannot be opened without a password")]
    EncryptedPdf,
    /// An office file or spreadsheet protected by a password.
    #[error("the file is password-protected")]
    PasswordProtected,
    /// A configured limit was exceeded (zip bomb, too many pages, huge image, ...).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The extraction took longer than the pipeline's `timeout_secs`.
    #[error("extraction took longer than the configured timeout")]
    Timeout,
    /// OCR (Tesseract) or page rendering failed.
    #[error("OCR failed: {0}")]
    Ocr(String),
    /// The file is valid but has nothing docpipe can read (for example a spreadsheet with no cells).
    #[error("the file contains no extractable content: {0}")]
    Empty(String),
    /// Speech recognition of an audio file failed.
    #[error("transcription failed: {0}")]
    Transcription(String),
    /// The extraction worker process died on this file (a crash in a parser, not a limit or the deadline).
    #[error("the extractor crashed on this file: {0}")]
    Crashed(String),
}

impl ExtractError {
    /// The stable error code stored on the failed file.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::Corrupt(_) => "corrupt_file",
            ExtractError::EncryptedPdf => "encrypted_pdf",
            ExtractError::PasswordProtected => "password_protected",
            ExtractError::LimitExceeded(_) => "limit_exceeded",
            ExtractError::Timeout => "extraction_timeout",
            ExtractError::Ocr(_) => "ocr_failed",
            ExtractError::Empty(_) => "no_content",
            ExtractError::Transcription(_) => "transcription_failed",
            ExtractError::Crashed(_) => "extractor_crashed",
        }
    }
}

/// The extractor for a format.
pub fn extractor_for(format: Format) -> &'static dyn Extractor {
    use Format as F;
    match format {
        F::Pdf => &pdf::PdfExtractor,
        F::Docx => &office::DocxExtractor,
        F::Pptx => &pptx::PptxExtractor,
        F::Odt => &odt::OdtExtractor,
        F::Xlsx | F::Xls | F::Xlsb | F::Ods | F::Csv | F::Tsv => &sheet::SheetExtractor,
        F::Html => &html::HtmlExtractor,
        F::Text | F::Markdown | F::Json | F::Xml | F::Code(_) => &text::TextExtractor,
        F::Png | F::Jpeg | F::Gif | F::Bmp | F::Webp | F::Tiff => &image::ImageExtractor,
        F::Mp3 | F::Wav | F::M4a | F::Aac | F::Ogg | F::Flac => &audio::AudioExtractor,
    }
}

/// Runs the extractor for `input.format`, catching panics so a bad file can never take the process down.
pub fn extract(input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
    let extractor = extractor_for(input.format);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        extractor.extract(input, ctx)
    })) {
        Ok(result) => result.and_then(|doc| bounds::bound(doc, ctx.limits)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(ExtractError::Corrupt(format!(
                "the {} parser failed: {what}",
                input.format.name()
            )))
        }
    }
}

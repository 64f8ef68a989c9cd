//! Domain types shared by every layer: what an extractor produces and what the store keeps.
//! No HTTP, storage or model types here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The broad family a file belongs to; each category has one pipeline definition in `pipelines/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Pdf,
    Office,
    Sheet,
    Text,
    Image,
    Audio,
}

impl Category {
    /// Every category, in a stable order.
    pub const ALL: [Category; 6] = [
        Category::Pdf,
        Category::Office,
        Category::Sheet,
        Category::Text,
        Category::Image,
        Category::Audio,
    ];

    /// The lowercase name used in the API, the database and pipeline file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Pdf => "pdf",
            Category::Office => "office",
            Category::Sheet => "sheet",
            Category::Text => "text",
            Category::Image => "image",
            Category::Audio => "audio",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The extractor's output: ordered segments with locations, plus format-specific metadata
/// (page count, image dimensions, audio codec, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Segments in reading order.
    pub segments: Vec<Segment>,
    /// Format-specific facts about the whole file, e.g. `{"pages": 3, "ocr_pages": [2]}`.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl Document {
    /// All segment texts joined by newlines: the plain-text view of the document.
    pub fn plain_text(&self) -> String {
        let texts: Vec<&str> = self.segments.iter().map(|s| s.text.as_str()).collect();
        texts.join("\n")
    }

    /// Sets one metadata entry.
    pub fn set_meta(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.metadata.insert(key.to_owned(), value.into());
    }
}

/// One piece of text with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The text, without trailing newline.
    pub text: String,
    /// What role the text plays.
    pub kind: SegmentKind,
    /// Where in the file the text is.
    pub location: Location,
}

impl Segment {
    /// Builds a segment.
    pub fn new(kind: SegmentKind, text: impl Into<String>, location: Location) -> Segment {
        Segment {
            text: text.into(),
            kind,
            location,
        }
    }
}

/// The role of a segment in its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// A title or heading (its level is in the location's heading path length).
    Heading,
    /// Body text: a paragraph, a page's text, a line of a text file.
    Paragraph,
    /// An item of a bulleted or numbered list.
    ListItem,
    /// A table's header row (repeated so chunks stay meaningful).
    TableHeader,
    /// A table or spreadsheet row rendered as text.
    TableRow,
    /// Page header text, kept apart from the body.
    Header,
    /// Page footer text, kept apart from the body.
    Footer,
    /// A reviewer comment.
    Comment,
    /// Speaker notes of a slide.
    Note,
    /// Source code or preformatted text.
    Code,
    /// A transcript segment of audio.
    Transcript,
}

/// Where a segment is in its file. Serialised with a `type` tag, e.g.
/// `{"type": "page", "page": 3}` or `{"type": "cells", "sheet": "Sheet1", "range": "A1:D20"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Location {
    /// A page of a PDF (1-based); `ocr` is true when the text came from OCR of the page image.
    Page { page: u32, ocr: bool },
    /// A slide of a presentation (1-based).
    Slide { slide: u32 },
    /// A cell range of a spreadsheet sheet, e.g. sheet `Sheet1`, range `A1:D1`.
    Cells { sheet: String, range: String },
    /// A place in a flowing document: the headings above it (outermost first) and the
    /// 1-based index of the block (paragraph, list item, table row) in the body.
    Section {
        heading_path: Vec<String>,
        block: u32,
    },
    /// A range of lines (1-based, inclusive) of a text-like file.
    Lines { start: u32, end: u32 },
    /// A time range of audio, in seconds.
    Time { start: f64, end: f64 },
    /// A whole image (OCR text of the picture).
    Image,
}

/// Where a file is in the ingestion pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Stored and waiting for a worker.
    Queued,
    /// A worker is extracting it.
    Processing,
    /// Extraction finished; its text is available.
    Ready,
    /// Extraction failed; the record's error says why.
    Failed,
}

impl FileStatus {
    /// The lowercase name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Queued => "queued",
            FileStatus::Processing => "processing",
            FileStatus::Ready => "ready",
            FileStatus::Failed => "failed",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<FileStatus> {
        [
            FileStatus::Queued,
            FileStatus::Processing,
            FileStatus::Ready,
            FileStatus::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Ready or failed: nothing more will happen to the file.
    pub fn is_terminal(self) -> bool {
        matches!(self, FileStatus::Ready | FileStatus::Failed)
    }
}

/// How far processing has come, e.g. 3 of 10 pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (0 while unknown).
    pub total: u64,
    /// What is counted: `pages`, `sheets`, `slides`, `seconds`, ...
    pub unit: String,
}

/// Why a file failed, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// Machine-readable code, e.g. `encrypted_pdf`, `corrupt_file`, `extraction_timeout`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// An uploaded file and its processing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub tenant: String,
    pub filename: String,
    pub content_type: String,
    pub format: String,
    pub category: Category,
    pub size: u64,
    pub sha256: String,
    pub purpose: Option<String>,
    pub status: FileStatus,
    pub progress: Progress,
    pub error: Option<FileError>,
    /// True when identical content had already been extracted, so this file reused that result.
    pub deduplicated: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The client's metadata, given at upload.
    pub metadata: Option<Metadata>,
}

/// A client's metadata on a file or batch: string keys to string values, within [`check_metadata`]'s limits.
pub type Metadata = std::collections::BTreeMap<String, String>;

/// Most metadata pairs, and the longest key and value, in characters (OpenAI's limits).
pub const MAX_METADATA_PAIRS: usize = 16;
pub const MAX_METADATA_KEY: usize = 64;
pub const MAX_METADATA_VALUE: usize = 512;

/// Checks metadata against the limits; the error says which one it broke.
pub fn check_metadata(m: &Metadata) -> Result<(), String> {
    if m.len() > MAX_METADATA_PAIRS {
        return Err(format!("metadata holds at most {MAX_METADATA_PAIRS} pairs"));
    }
    if m.iter().any(|(k, v)| {
        k.chars().count() > MAX_METADATA_KEY || v.chars().count() > MAX_METADATA_VALUE
    }) {
        return Err(format!(
            "metadata keys are at most {MAX_METADATA_KEY} characters, values at most {MAX_METADATA_VALUE}"
        ));
    }
    Ok(())
}

/// Where an OpenAI batch is in its lifecycle: `validating -> in_progress -> finalizing -> completed`, or
/// `failed` (validation), `cancelling -> cancelled`, `expired` (not done within its completion window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [BatchStatus; 8] = [
        BatchStatus::Validating,
        BatchStatus::Failed,
        BatchStatus::InProgress,
        BatchStatus::Finalizing,
        BatchStatus::Completed,
        BatchStatus::Expired,
        BatchStatus::Cancelling,
        BatchStatus::Cancelled,
    ];

    /// The snake_case name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<BatchStatus> {
        BatchStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to the batch.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Failed
                | BatchStatus::Completed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }
}

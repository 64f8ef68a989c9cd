//! Wire types of the file APIs, converted from domain types with `From`.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};

use crate::app::files::{
    Category, Document, FileError, FileEvent, FileFilter, FileRecord, FileStatus, Progress,
    StoredChunk, chunk_id,
};

/// Processing status of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum StatusDto {
    /// Stored, waiting for a worker.
    Queued,
    /// Being extracted.
    Processing,
    /// Extracted; the text is available.
    Ready,
    /// Extraction failed; `error` says why.
    Failed,
}

impl From<FileStatus> for StatusDto {
    fn from(s: FileStatus) -> StatusDto {
        match s {
            FileStatus::Queued => StatusDto::Queued,
            FileStatus::Processing => StatusDto::Processing,
            FileStatus::Ready => StatusDto::Ready,
            FileStatus::Failed => StatusDto::Failed,
        }
    }
}

impl From<StatusDto> for FileStatus {
    fn from(s: StatusDto) -> FileStatus {
        match s {
            StatusDto::Queued => FileStatus::Queued,
            StatusDto::Processing => FileStatus::Processing,
            StatusDto::Ready => FileStatus::Ready,
            StatusDto::Failed => FileStatus::Failed,
        }
    }
}

/// File category; each has its own pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum CategoryDto {
    Pdf,
    Office,
    Sheet,
    Text,
    Image,
    Audio,
}

impl From<Category> for CategoryDto {
    fn from(c: Category) -> CategoryDto {
        match c {
            Category::Pdf => CategoryDto::Pdf,
            Category::Office => CategoryDto::Office,
            Category::Sheet => CategoryDto::Sheet,
            Category::Text => CategoryDto::Text,
            Category::Image => CategoryDto::Image,
            Category::Audio => CategoryDto::Audio,
        }
    }
}

impl From<CategoryDto> for Category {
    fn from(c: CategoryDto) -> Category {
        match c {
            CategoryDto::Pdf => Category::Pdf,
            CategoryDto::Office => Category::Office,
            CategoryDto::Sheet => Category::Sheet,
            CategoryDto::Text => Category::Text,
            CategoryDto::Image => Category::Image,
            CategoryDto::Audio => Category::Audio,
        }
    }
}

/// How far processing has come.
#[derive(Debug, Clone, Object)]
pub struct ProgressDto {
    /// Units done.
    pub done: u64,
    /// Units in all (0 while unknown).
    pub total: u64,
    /// What is counted: `pages`, `slides`, `sheets`, `seconds`, `images`, ...
    pub unit: String,
    /// Percent done, when the total is known.
    #[oai(nullable)]
    pub percent: Option<f64>,
}

impl From<&Progress> for ProgressDto {
    fn from(p: &Progress) -> ProgressDto {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a percentage needs no more precision"
        )]
        let percent = (p.total > 0)
            .then(|| (p.done.min(p.total) as f64 * 100.0 / p.total as f64 * 10.0).round() / 10.0);
        ProgressDto {
            done: p.done,
            total: p.total,
            unit: p.unit.clone(),
            percent,
        }
    }
}

/// Why a file failed.
#[derive(Debug, Clone, Object)]
pub struct FileErrorDto {
    /// Stable code: `corrupt_file`, `encrypted_pdf`, `password_protected`, `limit_exceeded`,
    /// `extraction_timeout`, `extractor_crashed`, `ocr_failed`, `no_content`, `processing_crashed`,
    /// `internal_error`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl From<&FileError> for FileErrorDto {
    fn from(e: &FileError) -> FileErrorDto {
        FileErrorDto {
            code: e.code.clone(),
            message: e.message.clone(),
        }
    }
}

/// A file record.
#[derive(Debug, Clone, Object)]
pub struct FileObject {
    /// The file's id.
    pub id: String,
    /// The name the client gave (path components removed).
    pub filename: String,
    /// The MIME type detected from the file's bytes.
    pub content_type: String,
    /// The detected format: `pdf`, `docx`, `xlsx`, `csv`, `markdown`, `python`, `png`, `mp3`, ...
    pub format: String,
    /// The category, which selects the pipeline.
    pub category: CategoryDto,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes (hex).
    pub sha256: String,
    /// Processing status.
    pub status: StatusDto,
    /// Processing progress.
    pub progress: ProgressDto,
    /// Why processing failed (only when `status` is `failed`).
    #[oai(nullable)]
    pub error: Option<FileErrorDto>,
    /// True when identical content had been uploaded before: this record shares its stored bytes and
    /// extraction, and no work was repeated.
    pub deduplicated: bool,
    /// The OpenAI Files API `purpose`, when uploaded through `/v1/files`.
    #[oai(nullable)]
    pub purpose: Option<String>,
    /// The metadata given at upload (or by its document batch).
    #[oai(nullable)]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// When the file was uploaded.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&FileRecord> for FileObject {
    fn from(f: &FileRecord) -> FileObject {
        FileObject {
            id: f.id.clone(),
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            format: f.format.clone(),
            category: f.category.into(),
            size: f.size,
            sha256: f.sha256.clone(),
            status: f.status.into(),
            progress: (&f.progress).into(),
            error: f.error.as_ref().map(Into::into),
            deduplicated: f.deduplicated,
            purpose: f.purpose.clone(),
            metadata: f.metadata.clone(),
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

/// A page of files.
#[derive(Debug, Clone, Object)]
pub struct FileList {
    /// The files, newest first.
    pub data: Vec<FileObject>,
    /// Files matching the filters in all.
    pub total: u64,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u32,
    /// True when more files follow this page.
    pub has_more: bool,
}

impl FileList {
    /// Builds a page.
    pub fn new(files: &[FileRecord], total: u64, filter: &FileFilter) -> FileList {
        FileList {
            data: files.iter().map(FileObject::from).collect(),
            total,
            limit: filter.limit,
            offset: filter.offset,
            has_more: u64::from(filter.offset) + (files.len() as u64) < total,
        }
    }
}

/// One extracted segment.
#[derive(Debug, Clone, Object)]
pub struct SegmentDto {
    /// Position in the document (0-based).
    pub index: u32,
    /// Role: `heading`, `paragraph`, `list_item`, `table_header`, `table_row`, `header`, `footer`,
    /// `comment`, `note`, `code`, `transcript`.
    pub kind: String,
    /// The text.
    pub text: String,
    /// Where it is, tagged by `type`: `{"type":"page","page":3,"ocr":false}`, `{"type":"slide","slide":2}`,
    /// `{"type":"cells","sheet":"Sheet1","range":"A2:D2"}`,
    /// `{"type":"section","heading_path":["Intro","Scope"],"block":4}`, `{"type":"lines","start":1,"end":9}`,
    /// `{"type":"time","start":0.0,"end":4.2}`, `{"type":"image"}`.
    pub location: serde_json::Value,
}

/// The extracted document of a file.
#[derive(Debug, Clone, Object)]
pub struct DocumentText {
    /// The file's id.
    pub file_id: String,
    /// The file's name.
    pub filename: String,
    /// The detected format.
    pub format: String,
    /// Format facts: page count and OCR'd pages, sheet names, image size and EXIF, audio codec and duration...
    pub metadata: serde_json::Value,
    /// All segment texts joined by newlines.
    pub text: String,
    /// The segments in reading order.
    pub segments: Vec<SegmentDto>,
}

impl DocumentText {
    /// Builds the response from a file and its document.
    pub fn new(file: &FileRecord, doc: Document) -> DocumentText {
        let text = doc.plain_text();
        DocumentText {
            file_id: file.id.clone(),
            filename: file.filename.clone(),
            format: file.format.clone(),
            metadata: serde_json::to_value(&doc.metadata).unwrap_or_default(),
            text,
            segments: doc
                .segments
                .into_iter()
                .enumerate()
                .map(|(i, s)| SegmentDto {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    kind: serde_json::to_value(s.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    text: s.text,
                    location: serde_json::to_value(&s.location).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A status or progress change of a file, sent as a server-sent event.
#[derive(Debug, Clone, Object)]
pub struct FileEventDto {
    /// The file's id.
    pub file_id: String,
    /// Its status.
    pub status: StatusDto,
    /// Its progress.
    pub progress: ProgressDto,
    /// Why it failed, when it did.
    #[oai(nullable)]
    pub error: Option<FileErrorDto>,
}

impl From<&FileEvent> for FileEventDto {
    fn from(e: &FileEvent) -> FileEventDto {
        FileEventDto {
            file_id: e.file_id.clone(),
            status: e.status.into(),
            progress: (&e.progress).into(),
            error: e.error.as_ref().map(Into::into),
        }
    }
}

/// Confirmation of a deletion.
#[derive(Debug, Clone, Object)]
pub struct DeletedFile {
    /// The deleted file's id.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

impl From<&FileRecord> for DeletedFile {
    fn from(f: &FileRecord) -> DeletedFile {
        DeletedFile {
            id: f.id.clone(),
            object: "file".into(),
            deleted: true,
        }
    }
}

/// One chunk of a file.
#[derive(Debug, Clone, Object)]
pub struct ChunkDto {
    /// The chunk's id in search results (`<file id>#<ordinal>`).
    pub chunk_id: String,
    /// Position in the file (0-based).
    pub ordinal: u32,
    /// The text (including the overlap with the previous chunk and, for sheets, the repeated header row).
    pub text: String,
    /// Merged location of the chunk's segments, tagged by `type` (`pages`, `slides`, `cells`, `section`,
    /// `lines`, `time`, `image`).
    pub location: serde_json::Value,
    /// Tokens in the embedding model's tokenizer (including [CLS]/[SEP]).
    pub token_count: u32,
}

/// A page of chunks.
#[derive(Debug, Clone, Object)]
pub struct ChunkList {
    /// The file.
    pub file_id: String,
    /// The chunks, in order.
    pub data: Vec<ChunkDto>,
    /// Chunks of the file in all.
    pub total: u64,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u32,
    /// True when more chunks follow.
    pub has_more: bool,
}

impl ChunkList {
    /// Builds a page.
    pub fn new(
        file_id: &str,
        chunks: Vec<StoredChunk>,
        total: u64,
        limit: u32,
        offset: u32,
    ) -> ChunkList {
        let n = chunks.len() as u64;
        ChunkList {
            file_id: file_id.to_owned(),
            data: chunks
                .into_iter()
                .map(|c| ChunkDto {
                    chunk_id: chunk_id(file_id, c.ordinal),
                    ordinal: c.ordinal,
                    text: c.text,
                    location: c.location,
                    token_count: c.token_count,
                })
                .collect(),
            total,
            limit,
            offset,
            has_more: u64::from(offset) + n < total,
        }
    }
}

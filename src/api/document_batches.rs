//! Document batches: many files (or ZIP archives of them) in one multipart request, then each file's fate
//! and the batch's counts, as a record or as server-sent events.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::{Request, RequestBody};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, Enum, ExtractParamOptions, Multipart, Object,
    OpenApi,
};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::broadcast;

use super::ApiTags;
use super::auth::{Caller, Write};
use super::error::{ApiError, ErrorCode};
use super::types::{FileErrorDto, ProgressDto};
use crate::app::App;
use crate::app::document_batches::{
    BatchCounts, BatchItemRow, BatchUpload, DocumentBatch, ItemState, MAX_LIST_LIMIT, Metadata,
};
use crate::app::files::{FileEvent, FileStatus};

/// Longest `metadata` part, in bytes.
const MAX_METADATA_BYTES: u64 = 64 * 1024;
/// Keep-alive comment interval of event streams.
const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Default page size of the batch list.
const DEFAULT_LIST_LIMIT: u32 = 20;

/// A document batch upload, as the OpenAPI document describes it. The server reads it as a stream, part
/// by part, so a large batch is never held in memory.
#[derive(Debug, Multipart)]
#[expect(
    dead_code,
    reason = "only its derived schema is used: the body is read as a stream"
)]
pub struct DocumentBatchForm {
    /// Optional JSON object of string keys and values (at most 16 pairs; keys up to 64 characters, values
    /// up to 512) set on every file of the batch. Send it before the file parts.
    pub metadata: Option<String>,
    /// The files: repeat the part once per file. A part that is a ZIP archive (not a ZIP-based document
    /// such as DOCX) is expanded: each member becomes a file, directories, `__MACOSX/` and hidden files
    /// are skipped, paths are sanitised, and archives inside it are refused (`nested_archive`).
    pub file: Vec<Upload>,
}

/// The multipart body of `POST /api/v1/batches`, read part by part.
pub struct DocumentBatchBody(poem::web::Multipart);

impl<'a> ApiExtractor<'a> for DocumentBatchBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <DocumentBatchForm as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <DocumentBatchForm as Payload>::CONTENT_TYPE,
                schema: <DocumentBatchForm as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let multipart = request
            .content_type()
            .is_some_and(<DocumentBatchForm as Payload>::check_content_type);
        if !multipart {
            return Err(ApiError::with_param(
                ErrorCode::InvalidRequest,
                "a document batch is a multipart/form-data body with `file` parts",
                Some("file"),
            )
            .into());
        }
        let multipart =
            <poem::web::Multipart as poem::FromRequest>::from_request(request, body).await?;
        Ok(DocumentBatchBody(multipart))
    }
}

/// Whether every file of a batch has reached its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DocumentBatchStatus {
    /// Some files are queued or being extracted.
    Processing,
    /// Every file is ready, failed, refused or deleted.
    Completed,
}

/// Where one file of a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum BatchFileStatus {
    /// Stored, waiting for a worker.
    Queued,
    /// Being extracted.
    Processing,
    /// Extracted; the text is available.
    Ready,
    /// Extraction failed; `error` says why.
    Failed,
    /// Refused at upload (too large, unsupported, a nested archive, ...); `error` says why and no file
    /// was stored.
    Rejected,
    /// Its file was deleted since.
    Deleted,
}

impl From<ItemState> for BatchFileStatus {
    fn from(s: ItemState) -> BatchFileStatus {
        match s {
            ItemState::Rejected => BatchFileStatus::Rejected,
            ItemState::Deleted => BatchFileStatus::Deleted,
            ItemState::File(FileStatus::Queued) => BatchFileStatus::Queued,
            ItemState::File(FileStatus::Processing) => BatchFileStatus::Processing,
            ItemState::File(FileStatus::Ready) => BatchFileStatus::Ready,
            ItemState::File(FileStatus::Failed) => BatchFileStatus::Failed,
        }
    }
}

/// How many files of a batch are where.
#[derive(Debug, Clone, Object)]
pub struct DocumentBatchCounts {
    /// Files in the batch (parts, and members of its archives), refused ones included.
    pub total: u64,
    pub queued: u64,
    pub processing: u64,
    pub ready: u64,
    pub failed: u64,
    pub rejected: u64,
    pub deleted: u64,
    /// Files nothing more will happen to (everything but queued and processing).
    pub done: u64,
}

impl From<BatchCounts> for DocumentBatchCounts {
    fn from(c: BatchCounts) -> DocumentBatchCounts {
        DocumentBatchCounts {
            total: c.total,
            queued: c.queued,
            processing: c.processing,
            ready: c.ready,
            failed: c.failed,
            rejected: c.rejected,
            deleted: c.deleted,
            done: c.done(),
        }
    }
}

/// One file of a batch.
#[derive(Debug, Clone, Object)]
pub struct DocumentBatchFile {
    /// Its position in the batch, from 0, in the order the parts and archive members came.
    pub index: u32,
    /// The file's name (path components removed).
    pub filename: String,
    /// Its sanitised path inside its archive, for a member of one.
    #[oai(nullable)]
    pub path: Option<String>,
    /// The archive it came from, for a member of one.
    #[oai(nullable)]
    pub archive: Option<String>,
    /// The stored file (`/api/v1/files/{file_id}`); null when it was refused.
    #[oai(nullable)]
    pub file_id: Option<String>,
    pub status: BatchFileStatus,
    /// Extraction progress of the stored file.
    #[oai(nullable)]
    pub progress: Option<ProgressDto>,
    /// Why it was refused or failed.
    #[oai(nullable)]
    pub error: Option<FileErrorDto>,
    /// True when identical content had been uploaded before (in this batch or earlier): the file shares its
    /// extraction, as a single upload would.
    pub deduplicated: bool,
    /// The detected format, when stored.
    #[oai(nullable)]
    pub format: Option<String>,
    /// Size in bytes, when stored.
    #[oai(nullable)]
    pub size: Option<u64>,
}

impl From<&BatchItemRow> for DocumentBatchFile {
    fn from(i: &BatchItemRow) -> DocumentBatchFile {
        let file = i.file.as_ref();
        DocumentBatchFile {
            index: i.ordinal,
            filename: i.filename.clone(),
            path: i.path.clone(),
            archive: i.archive.clone(),
            file_id: i.file_id.clone(),
            status: ItemState::of(i).into(),
            progress: file.map(|f| (&f.progress).into()),
            error: i
                .error
                .as_ref()
                .or_else(|| file.and_then(|f| f.error.as_ref()))
                .map(Into::into),
            deduplicated: file.is_some_and(|f| f.deduplicated),
            format: file.map(|f| f.format.clone()),
            size: file.map(|f| f.size),
        }
    }
}

/// A document batch.
#[derive(Debug, Clone, Object)]
pub struct DocumentBatchObject {
    /// The batch's id (`docbatch-…`).
    pub id: String,
    /// Always `document_batch`.
    pub object: String,
    pub status: DocumentBatchStatus,
    pub counts: DocumentBatchCounts,
    /// Percent of the files done.
    pub percent: f64,
    /// The metadata given, set on every file of the batch.
    #[oai(nullable)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// When the batch was received.
    pub created_at: DateTime<Utc>,
    /// Every file, in order (omitted in lists: read the batch for them).
    #[oai(skip_serializing_if_is_none)]
    pub files: Option<Vec<DocumentBatchFile>>,
}

fn status_of(c: &BatchCounts) -> DocumentBatchStatus {
    if c.done() == c.total {
        DocumentBatchStatus::Completed
    } else {
        DocumentBatchStatus::Processing
    }
}

fn percent(c: &BatchCounts) -> f64 {
    if c.total == 0 {
        return 100.0;
    }
    #[expect(clippy::cast_precision_loss, reason = "file counts are far below 2^52")]
    let p = c.done() as f64 * 100.0 / c.total as f64;
    (p * 10.0).round() / 10.0
}

impl DocumentBatchObject {
    fn new(b: &DocumentBatch, with_files: bool) -> DocumentBatchObject {
        let counts = b.counts();
        DocumentBatchObject {
            id: b.row.id.clone(),
            object: "document_batch".into(),
            status: status_of(&counts),
            percent: percent(&counts),
            counts: counts.into(),
            metadata: b.metadata(),
            created_at: Utc
                .timestamp_millis_opt(b.row.created_at)
                .single()
                .unwrap_or_default(),
            files: with_files.then(|| b.items.iter().map(Into::into).collect()),
        }
    }
}

/// A page of document batches.
#[derive(Debug, Clone, Object)]
pub struct DocumentBatchList {
    /// Always `list`.
    pub object: String,
    /// Newest first, without their files.
    pub data: Vec<DocumentBatchObject>,
    /// The last batch's id: pass it as `after` for the next page.
    #[oai(nullable)]
    pub last_id: Option<String>,
    /// True when more batches follow.
    pub has_more: bool,
}

/// A change in a document batch: one file's new state and the batch's counts after it.
#[derive(Debug, Clone, Object)]
pub struct DocumentBatchEvent {
    /// The batch's id.
    pub batch_id: String,
    pub status: DocumentBatchStatus,
    pub counts: DocumentBatchCounts,
    /// Percent of the files done.
    pub percent: f64,
    /// The file that changed.
    pub file: DocumentBatchFile,
}

/// A new document batch.
#[derive(ApiResponse)]
pub enum CreateResponse {
    /// Every part is stored (or refused, with its reason in `files`) and queued; follow the batch with
    /// `GET /api/v1/batches/{batch_id}` or its `/events`.
    #[oai(status = 201)]
    Created(Json<DocumentBatchObject>),
}

/// The document batch endpoints.
pub struct DocumentBatchesApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::Files")]
impl DocumentBatchesApi {
    /// Upload a batch of documents
    ///
    /// Many `file` parts in one `multipart/form-data` request, or ZIP archives of files, plus an optional
    /// `metadata` part (a JSON object of strings, sent first) set on every file. Each file is stored and
    /// queued as a single upload would be (deduplicated against this batch and earlier uploads); a file
    /// refused at upload (too large, unsupported, empty, a nested archive) is listed with its reason and
    /// the rest go on. Answers once the last part is in, with the batch and its files; extraction runs in
    /// the background. A request that fails as a whole (a bad form, more than `DOCPIPE_MAX_BATCH_FILES`
    /// files, a full queue) keeps none of its files.
    #[oai(path = "/api/v1/batches", method = "post")]
    async fn create(
        &self,
        caller: Caller<Write>,
        body: DocumentBatchBody,
    ) -> Result<CreateResponse, ApiError> {
        let mut batch = self.app.begin_document_batch(&caller.tenant);
        if let Err(e) = receive(&mut batch, body.0).await {
            batch.abort().await;
            return Err(e);
        }
        let batch = batch.finish().await?;
        caller.audit("document_batch.create", &batch.row.id);
        Ok(CreateResponse::Created(Json(DocumentBatchObject::new(
            &batch, true,
        ))))
    }

    /// List document batches
    ///
    /// Newest first, with their counts (read one batch for its files), paginated by `after`.
    #[oai(path = "/api/v1/batches", method = "get")]
    async fn list(
        &self,
        caller: Caller,
        /// The last batch id of the previous page.
        after: Query<Option<String>>,
        /// Page size (1-100, default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> Result<Json<DocumentBatchList>, ApiError> {
        let limit = limit.0.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT);
        let mut batches = self
            .app
            .document_batches(&caller.tenant, after.0.as_deref(), limit + 1)
            .await?;
        let has_more = batches.len() > limit as usize;
        batches.truncate(limit as usize);
        Ok(Json(DocumentBatchList {
            object: "list".into(),
            last_id: batches.last().map(|b| b.row.id.clone()),
            data: batches
                .iter()
                .map(|b| DocumentBatchObject::new(b, false))
                .collect(),
            has_more,
        }))
    }

    /// Get a document batch
    ///
    /// The batch's status and counts, and every file with its status, progress and, when refused or
    /// failed, the reason.
    #[oai(path = "/api/v1/batches/:batch_id", method = "get")]
    async fn get(
        &self,
        caller: Caller,
        batch_id: Path<String>,
    ) -> Result<Json<DocumentBatchObject>, ApiError> {
        let batch = self.app.document_batch(&caller.tenant, &batch_id.0).await?;
        Ok(Json(DocumentBatchObject::new(&batch, true)))
    }

    /// Stream a document batch's events
    ///
    /// Server-sent events: first every file's current state, then each change of any file of the batch,
    /// each with the batch's counts after it, until every file is done.
    #[oai(path = "/api/v1/batches/:batch_id/events", method = "get")]
    async fn events(
        &self,
        caller: Caller,
        batch_id: Path<String>,
    ) -> Result<EventStream<BoxStream<'static, DocumentBatchEvent>>, ApiError> {
        // Subscribe before reading the state so no change in between is lost.
        let rx = self.app.file_events();
        let batch = self.app.document_batch(&caller.tenant, &batch_id.0).await?;
        Ok(
            EventStream::new(event_stream(rx, batch, self.app.clone()))
                .keep_alive(EVENT_KEEP_ALIVE),
        )
    }
}

/// Reads the form part by part into the batch.
async fn receive(
    batch: &mut BatchUpload,
    mut multipart: poem::web::Multipart,
) -> Result<(), ApiError> {
    let malformed = |e: poem::error::ParseMultipartError| {
        ApiError::with_param(
            ErrorCode::InvalidRequest,
            format!("the multipart body is malformed: {e}"),
            Some("file"),
        )
    };
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or("upload").to_owned();
                batch.add(&name, Box::pin(field.into_async_read())).await?;
            }
            Some("metadata") => {
                let text = read_field(field.into_async_read(), MAX_METADATA_BYTES)
                    .await
                    .map_err(|e| {
                        ApiError::with_param(
                            ErrorCode::InvalidRequest,
                            format!("reading the metadata part failed: {e}"),
                            Some("metadata"),
                        )
                    })?
                    .ok_or_else(|| {
                        ApiError::with_param(
                            ErrorCode::InvalidRequest,
                            format!("the metadata part is longer than {MAX_METADATA_BYTES} bytes"),
                            Some("metadata"),
                        )
                    })?;
                batch.set_metadata(parse_metadata(&text)?)?;
            }
            other => {
                return Err(ApiError::with_param(
                    ErrorCode::InvalidRequest,
                    format!(
                        "unknown form field {:?}: send `file` parts and an optional `metadata` part",
                        other.unwrap_or_default()
                    ),
                    other,
                ));
            }
        }
    }
    Ok(())
}

/// Parses a `metadata` form value: a JSON object of strings.
pub fn parse_metadata(text: &str) -> Result<Metadata, ApiError> {
    serde_json::from_str::<Metadata>(text).map_err(|e| {
        ApiError::with_param(
            ErrorCode::InvalidRequest,
            format!("metadata must be a JSON object of string keys and string values: {e}"),
            Some("metadata"),
        )
    })
}

/// The batch's files' current states, then every change of one of them, until all are done. A lagging
/// subscriber re-reads the batch.
fn event_stream(
    rx: broadcast::Receiver<FileEvent>,
    batch: DocumentBatch,
    app: App,
) -> BoxStream<'static, DocumentBatchEvent> {
    struct State {
        rx: broadcast::Receiver<FileEvent>,
        batch: DocumentBatch,
        /// File id -> index into `batch.items`.
        by_file: HashMap<String, usize>,
        /// Items not yet sent in the opening snapshot.
        snapshot: std::ops::Range<usize>,
        app: App,
        ended: bool,
    }
    let by_file = batch
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.file_id.clone().map(|f| (f, i)))
        .collect();
    let state = State {
        rx,
        snapshot: 0..batch.items.len(),
        batch,
        by_file,
        app,
        ended: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        let index = match s.snapshot.next() {
            Some(i) => i,
            None => {
                let counts = s.batch.counts();
                if counts.done() == counts.total {
                    return None;
                }
                loop {
                    match s.rx.recv().await {
                        Ok(e) if e.tenant == s.batch.row.tenant => {
                            if let Some(&i) = s.by_file.get(&e.file_id)
                                && let Some(f) = s.batch.items[i].file.as_mut()
                            {
                                f.status = e.status;
                                f.progress = e.progress;
                                f.error = e.error;
                                break i;
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            match s
                                .app
                                .document_batch(&s.batch.row.tenant, &s.batch.row.id)
                                .await
                            {
                                Ok(b) => {
                                    s.batch = b;
                                    s.snapshot = 0..s.batch.items.len();
                                    match s.snapshot.next() {
                                        Some(i) => break i,
                                        None => return None,
                                    }
                                }
                                Err(_) => return None,
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        };
        let counts = s.batch.counts();
        // The stream ends after the event that completes the batch (or, when it was complete already,
        // after the snapshot).
        s.ended = s.snapshot.is_empty() && counts.done() == counts.total;
        let event = DocumentBatchEvent {
            batch_id: s.batch.row.id.clone(),
            status: status_of(&counts),
            percent: percent(&counts),
            counts: counts.into(),
            file: (&s.batch.items[index]).into(),
        };
        Some((event, s))
    })
    .boxed()
}

/// Reads at most `cap` bytes of `body` (a small form field).
async fn read_field(
    body: impl AsyncRead + Unpin,
    cap: u64,
) -> Result<Option<String>, std::io::Error> {
    let mut out = Vec::new();
    body.take(cap + 1).read_to_end(&mut out).await?;
    if out.len() as u64 > cap {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out).into_owned()))
}

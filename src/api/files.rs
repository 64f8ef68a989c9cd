//! Pipeline API for files: upload, list, inspect, text, original bytes, progress events, delete.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, EventStream, Json, Response};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart, OpenApi};
use tokio::sync::broadcast;

use super::ApiTags;
use super::auth::{Caller, Write};
use super::error::{ApiError, ErrorCode};
use super::types::{
    CategoryDto, ChunkList, DeletedFile, DocumentText, FileEventDto, FileList, FileObject,
    StatusDto,
};
use crate::app::App;
use crate::app::files::{FileEvent, FileFilter, FileRecord, Metadata, UploadRequest};

/// Default page size of file lists.
const DEFAULT_LIMIT: u32 = 50;
/// Default `?wait=true` timeout in seconds.
const DEFAULT_WAIT_SECS: u64 = 60;
/// Keep-alive comment interval of event streams.
const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An upload.
#[derive(Debug, Multipart)]
pub struct UploadForm {
    /// The file. Its type is detected from its bytes; the extension must not contradict them.
    pub file: Upload,
    /// Optional JSON object of string keys and values (at most 16 pairs; keys up to 64 characters, values
    /// up to 512), kept with the file and shown in its record.
    pub metadata: Option<String>,
}

/// A new file record.
#[derive(ApiResponse)]
pub enum UploadResponse {
    /// The file is stored and queued (or, with `wait=true`, processed: check `status`). When identical
    /// content was uploaded before, the record shares its stored bytes and extraction and is `ready` at once
    /// with `deduplicated: true`.
    #[oai(status = 201)]
    Created(Json<FileObject>),
}

/// The pipeline file endpoints.
pub struct FilesApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::Files")]
impl FilesApi {
    /// Upload a file
    ///
    /// Upload any supported file as multipart field `file`: PDF; DOCX, PPTX, ODT; XLSX, XLS, XLSB, ODS;
    /// CSV/TSV; TXT, MD, JSON, HTML, XML and source code; PNG, JPEG, GIF, BMP, WEBP, TIFF; MP3, WAV,
    /// M4A/AAC, OGG, FLAC. Answers at once with the file record (`status: queued`); extraction runs in the
    /// background. With `wait=true` the answer comes when processing has finished or `timeout` seconds
    /// have passed, whichever is first.
    #[oai(path = "/api/v1/upload", method = "post")]
    async fn upload(
        &self,
        caller: Caller<Write>,
        form: UploadForm,
        /// Wait for processing to finish before answering.
        wait: Query<Option<bool>>,
        /// Longest wait in seconds with `wait=true` (default 60, capped by the server's `max_wait_secs`).
        timeout: Query<Option<u64>>,
    ) -> Result<UploadResponse, ApiError> {
        let metadata = form
            .metadata
            .as_deref()
            .map(super::document_batches::parse_metadata)
            .transpose()?;
        if let Some(m) = &metadata {
            crate::app::files::check_metadata(m).map_err(|message| {
                ApiError::with_param(ErrorCode::InvalidRequest, message, Some("metadata"))
            })?;
        }
        let file = upload_form(
            &self.app,
            &caller.tenant,
            form.file,
            None,
            metadata.as_ref(),
        )
        .await?;
        caller.audit("file.upload", &file.id);
        let file = if wait.0.unwrap_or(false) {
            let secs = timeout
                .0
                .unwrap_or(DEFAULT_WAIT_SECS)
                .min(self.app.config().max_wait_secs);
            self.app
                .wait_for_file(&caller.tenant, &file.id, Duration::from_secs(secs))
                .await?
        } else {
            file
        };
        Ok(UploadResponse::Created(Json(FileObject::from(&file))))
    }

    /// List files
    ///
    /// Newest first, with optional filters, paginated by `limit` and `offset`.
    #[oai(path = "/api/v1/files", method = "get")]
    async fn list(
        &self,
        caller: Caller,
        /// Only files in this status.
        status: Query<Option<StatusDto>>,
        /// Only files of this category.
        category: Query<Option<CategoryDto>>,
        /// Page size (1-500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Files to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<FileList>, ApiError> {
        let limit = page_limit(limit.0)?;
        let filter = FileFilter {
            status: status.0.map(Into::into),
            category: category.0.map(Into::into),
            limit,
            offset: offset.0.unwrap_or(0),
            ..FileFilter::default()
        };
        let (files, total) = self.app.files(&caller.tenant, &filter).await?;
        Ok(Json(FileList::new(&files, total, &filter)))
    }

    /// Get a file
    ///
    /// The file record with its status, progress and, when failed, the reason.
    #[oai(path = "/api/v1/files/:file_id", method = "get")]
    async fn get(
        &self,
        caller: Caller,
        file_id: Path<String>,
    ) -> Result<Json<FileObject>, ApiError> {
        let file = self.app.file(&caller.tenant, &file_id.0).await?;
        Ok(Json(FileObject::from(&file)))
    }

    /// Get the extracted text
    ///
    /// The extracted document: ordered segments, each with its text, kind and location (page, slide,
    /// sheet and cell range, heading path, line range or time range), plus format metadata.
    /// 409 while the file is not ready.
    #[oai(path = "/api/v1/files/:file_id/text", method = "get")]
    async fn text(
        &self,
        caller: Caller,
        file_id: Path<String>,
    ) -> Result<Json<DocumentText>, ApiError> {
        let (file, doc) = self.app.document(&caller.tenant, &file_id.0).await?;
        Ok(Json(DocumentText::new(&file, doc)))
    }

    /// List a file's chunks
    ///
    /// The token-bounded chunks the file was split into for search, in order, each with its merged location
    /// (pages, slides, sheet and cell range, heading path, lines or time range) and token count. 409 while
    /// the file is not ready.
    #[oai(path = "/api/v1/files/:file_id/chunks", method = "get")]
    async fn chunks(
        &self,
        caller: Caller,
        file_id: Path<String>,
        /// Page size (1-500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// Chunks to skip.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<Json<ChunkList>, ApiError> {
        let limit = page_limit(limit.0)?;
        let offset = offset.0.unwrap_or(0);
        let (file, chunks, total) = self
            .app
            .chunks(&caller.tenant, &file_id.0, limit, offset)
            .await?;
        Ok(Json(ChunkList::new(&file.id, chunks, total, limit, offset)))
    }

    /// Download the original file
    ///
    /// The bytes as uploaded, with the detected content type.
    #[oai(path = "/api/v1/files/:file_id/content", method = "get")]
    async fn content(
        &self,
        caller: Caller,
        file_id: Path<String>,
    ) -> Result<Response<Binary<Vec<u8>>>, ApiError> {
        content_response(&self.app, &caller.tenant, &file_id.0).await
    }

    /// Stream processing events
    ///
    /// Server-sent events with the file's status and progress: the current state first, then every
    /// change, until the file is `ready` or `failed`.
    #[oai(path = "/api/v1/files/:file_id/events", method = "get")]
    async fn events(
        &self,
        caller: Caller,
        file_id: Path<String>,
    ) -> Result<EventStream<BoxStream<'static, FileEventDto>>, ApiError> {
        // Subscribe before reading the state so no change in between is lost.
        let rx = self.app.file_events();
        let file = self.app.file(&caller.tenant, &file_id.0).await?;
        let first = FileEvent::of(&file);
        let stream = event_stream(rx, first, self.app.clone());
        Ok(EventStream::new(stream).keep_alive(EVENT_KEEP_ALIVE))
    }

    /// Delete a file
    ///
    /// Removes the file record, its extracted text and, when no other file shares them, its stored bytes.
    #[oai(path = "/api/v1/files/:file_id", method = "delete")]
    async fn delete(
        &self,
        caller: Caller<Write>,
        file_id: Path<String>,
    ) -> Result<Json<DeletedFile>, ApiError> {
        let file = self.app.delete_file(&caller.tenant, &file_id.0).await?;
        caller.audit("file.delete", &file.id);
        Ok(Json(DeletedFile::from(&file)))
    }
}

/// A page size: the default when none is given (the query validator bounds it to 1-500).
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    Ok(limit.unwrap_or(DEFAULT_LIMIT))
}

/// Stores a multipart upload; shared by the pipeline and OpenAI upload endpoints.
pub async fn upload_form(
    app: &App,
    tenant: &str,
    upload: Upload,
    purpose: Option<&str>,
    metadata: Option<&Metadata>,
) -> Result<FileRecord, ApiError> {
    let filename = upload.file_name().unwrap_or("upload").to_owned();
    let req = UploadRequest {
        tenant,
        filename: &filename,
        purpose,
        metadata,
    };
    Ok(app.upload(&req, upload.into_async_read()).await?)
}

/// The original bytes with their content type; shared by both file APIs.
pub async fn content_response(
    app: &App,
    tenant: &str,
    id: &str,
) -> Result<Response<Binary<Vec<u8>>>, ApiError> {
    let (file, bytes) = app.content(tenant, id).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.filename
            .replace(['"', '\\'], "_")
            .replace(|c: char| !c.is_ascii(), "_")
    );
    Ok(Response::new(Binary(bytes))
        .header("Content-Type", file.content_type)
        .header("Content-Disposition", disposition))
}

/// The first event, then this file's events until a terminal one. A lagging subscriber re-reads the record.
fn event_stream(
    rx: broadcast::Receiver<FileEvent>,
    first: FileEvent,
    app: App,
) -> BoxStream<'static, FileEventDto> {
    let id = first.file_id.clone();
    let tenant = first.tenant.clone();
    let state = (rx, Some(first), false);
    futures::stream::unfold(state, move |(mut rx, pending, finished)| {
        let id = id.clone();
        let first_tenant = tenant.clone();
        let app = app.clone();
        async move {
            if finished {
                return None;
            }
            let event = match pending {
                Some(e) => e,
                None => loop {
                    match rx.recv().await {
                        Ok(e) if e.file_id == id && e.tenant == first_tenant => break e,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            match app.file(&first_tenant, &id).await {
                                Ok(f) => break FileEvent::of(&f),
                                Err(_) => return None,
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                },
            };
            let done = event.status.is_terminal();
            Some((FileEventDto::from(&event), (rx, None, done)))
        }
    })
    .boxed()
}

/// Parses `body` as the upload form (`multipart/form-data` with `boundary`), as the upload routes do, and
/// reads its file part to the end: the multipart parser's fuzz entry ([`crate::fuzzing::multipart`]).
/// The bytes of the file part, or the parse error in words.
pub async fn parse_upload_form(body: Vec<u8>, boundary: &str) -> Result<usize, String> {
    use poem_openapi::payload::ParsePayload as _;
    use tokio::io::AsyncReadExt as _;
    let (req, mut body) = poem::Request::builder()
        .method(poem::http::Method::POST)
        .header(
            poem::http::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .split();
    let form = UploadForm::from_request(&req, &mut body)
        .await
        .map_err(|e| e.to_string())?;
    let mut file = Vec::new();
    form.file
        .into_async_read()
        .read_to_end(&mut file)
        .await
        .map_err(|e| e.to_string())?;
    Ok(file.len())
}

//! OpenAI Files API (`/v1/files`): the same store as the pipeline API, in OpenAI's shapes, so the official
//! SDKs' `files.create/list/retrieve/content/delete` work unchanged.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json, Response};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{Multipart, Object, OpenApi};

use super::ApiTags;
use super::auth::{Caller, Write};
use super::error::{ApiError, ErrorCode};
use super::files::{content_response, upload_form};
use super::types::DeletedFile;
use crate::app::App;
use crate::app::files::{DEFAULT_PURPOSE, FileFilter, FileOpError, FileRecord, FileStatus};

/// Largest page of `GET /v1/files`.
const MAX_LIMIT: u32 = 10_000;

/// An OpenAI-style upload.
#[derive(Debug, Multipart)]
pub struct OpenAiUploadForm {
    /// The file.
    pub file: Upload,
    /// What the file is for (`assistants`, `user_data`, `batch`, `fine-tune`, `vision`, ...); stored as given.
    #[oai(validator(pattern = r"\S"))]
    pub purpose: String,
}

/// A file in OpenAI's shape.
#[derive(Debug, Clone, Object)]
pub struct OpenAiFile {
    /// The file's id (the same id the pipeline API uses).
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Upload time, Unix seconds.
    pub created_at: i64,
    /// The file's name.
    pub filename: String,
    /// The purpose given at upload (`user_data` for files uploaded through the pipeline API).
    pub purpose: String,
    /// `uploaded` while queued or processing, `processed` when ready, `error` when failed.
    pub status: String,
    /// Why processing failed, when it did.
    #[oai(nullable)]
    pub status_details: Option<String>,
}

impl From<&FileRecord> for OpenAiFile {
    fn from(f: &FileRecord) -> OpenAiFile {
        let status = match f.status {
            FileStatus::Queued | FileStatus::Processing => "uploaded",
            FileStatus::Ready => "processed",
            FileStatus::Failed => "error",
        };
        OpenAiFile {
            id: f.id.clone(),
            object: "file".into(),
            bytes: f.size,
            created_at: f.created_at.timestamp(),
            filename: f.filename.clone(),
            purpose: f.purpose.clone().unwrap_or_else(|| DEFAULT_PURPOSE.into()),
            status: status.into(),
            status_details: f
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message)),
        }
    }
}

/// A list of files in OpenAI's shape.
#[derive(Debug, Clone, Object)]
pub struct OpenAiFileList {
    /// Always `list`.
    pub object: String,
    /// The files, newest first.
    pub data: Vec<OpenAiFile>,
    /// True when more files follow.
    pub has_more: bool,
}

/// The OpenAI-compatible file endpoints.
pub struct OpenAiFilesApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::OpenAi")]
impl OpenAiFilesApi {
    /// Upload a file (OpenAI)
    ///
    /// OpenAI Files API upload: multipart `file` and `purpose`. The file enters the same pipeline as
    /// `/api/v1/upload`.
    #[oai(path = "/v1/files", method = "post")]
    async fn create(
        &self,
        caller: Caller<Write>,
        form: OpenAiUploadForm,
    ) -> Result<Json<OpenAiFile>, ApiError> {
        if form.purpose.trim().is_empty() {
            return Err(ApiError::with_param(
                ErrorCode::InvalidRequest,
                "purpose must not be empty",
                Some("purpose"),
            ));
        }
        let file = upload_form(
            &self.app,
            &caller.tenant,
            form.file,
            Some(form.purpose.trim()),
            None,
        )
        .await?;
        caller.audit("file.upload", &file.id);
        Ok(Json(OpenAiFile::from(&file)))
    }

    /// List files (OpenAI)
    ///
    /// The caller's files, newest first. Page with `after`: pass the `id` of the last file of a page to get
    /// the next one (what the official SDKs' auto-pagination does). `purpose` and `after` apply before
    /// `limit`, so a page holds up to `limit` matching files and `has_more` says whether more match.
    /// An `after` that names no file of the caller is a 400 naming `after`.
    #[oai(path = "/v1/files", method = "get")]
    async fn list(
        &self,
        caller: Caller,
        /// Only files uploaded with this purpose (`user_data` also matches files uploaded through the
        /// pipeline API).
        purpose: Query<Option<String>>,
        /// Page size (1-10000, default 10000).
        limit: Query<Option<u32>>,
        /// A cursor: the id of a file; the page starts with the file listed after it.
        after: Query<Option<String>>,
    ) -> Result<Json<OpenAiFileList>, ApiError> {
        let limit = limit.0.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
        let filter = FileFilter {
            purpose: purpose.0,
            after: after.0,
            limit,
            ..FileFilter::default()
        };
        let (files, total) = match self.app.files(&caller.tenant, &filter).await {
            Err(FileOpError::NotFound(id)) => {
                return Err(ApiError::with_param(
                    ErrorCode::InvalidRequest,
                    format!(
                        "after: no file with id {id} to list after (pass the id of a file from the previous page)"
                    ),
                    Some("after"),
                ));
            }
            other => other?,
        };
        let data: Vec<OpenAiFile> = files.iter().map(OpenAiFile::from).collect();
        Ok(Json(OpenAiFileList {
            object: "list".into(),
            has_more: total > data.len() as u64,
            data,
        }))
    }

    /// Retrieve a file (OpenAI)
    #[oai(path = "/v1/files/:file_id", method = "get")]
    async fn retrieve(
        &self,
        caller: Caller,
        file_id: Path<String>,
    ) -> Result<Json<OpenAiFile>, ApiError> {
        let file = self.app.file(&caller.tenant, &file_id.0).await?;
        Ok(Json(OpenAiFile::from(&file)))
    }

    /// Download a file's content (OpenAI)
    #[oai(path = "/v1/files/:file_id/content", method = "get")]
    async fn content(
        &self,
        caller: Caller,
        file_id: Path<String>,
    ) -> Result<Response<Binary<Vec<u8>>>, ApiError> {
        content_response(&self.app, &caller.tenant, &file_id.0).await
    }

    /// Delete a file (OpenAI)
    #[oai(path = "/v1/files/:file_id", method = "delete")]
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

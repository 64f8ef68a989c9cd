//! Files: upload, list, read (record, extracted text, chunks, original bytes), follow and delete. Uploads
//! are stored and queued here; the extraction itself runs on the pipeline's workers.

use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::broadcast;
use tracing::instrument;

pub use crate::extract::{DetectError, ExtractError};
pub use crate::pipeline::{FileEvent, FileOpError, RETRY_AFTER_SECS, UploadError, UploadRequest};
pub use crate::store::{DEFAULT_PURPOSE, FileFilter, StoredChunk, chunk_id};
pub use crate::types::{
    Category, Document, FileError, FileRecord, FileStatus, Metadata, Progress, check_metadata,
};

use super::App;

impl App {
    /// Stores an upload read from `body` and queues it for extraction.
    #[instrument(skip_all, fields(tenant = req.tenant))]
    pub async fn upload(
        &self,
        req: &UploadRequest<'_>,
        body: impl AsyncRead + Unpin,
    ) -> Result<FileRecord, UploadError> {
        self.ingest.upload(req, body).await
    }

    /// Waits until the file is ready or failed, or `timeout` passes; returns its latest record.
    #[instrument(skip(self))]
    pub async fn wait_for_file(
        &self,
        tenant: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<FileRecord, FileOpError> {
        self.ingest.wait_done(tenant, id, timeout).await
    }

    /// One file.
    #[instrument(skip(self))]
    pub async fn file(&self, tenant: &str, id: &str) -> Result<FileRecord, FileOpError> {
        self.ingest.file(tenant, id).await
    }

    /// A page of files and the total count matching the filter. A cursor (`filter.after`) that names no
    /// file of the tenant is [`FileOpError::NotFound`] with its id.
    #[instrument(skip(self))]
    pub async fn files(
        &self,
        tenant: &str,
        filter: &FileFilter,
    ) -> Result<(Vec<FileRecord>, u64), FileOpError> {
        if let Some(after) = &filter.after {
            self.ingest.file(tenant, after).await?;
        }
        self.ingest.list(tenant, filter).await
    }

    /// The extracted document of a ready file.
    #[instrument(skip(self))]
    pub async fn document(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(FileRecord, Document), FileOpError> {
        self.ingest.document(tenant, id).await
    }

    /// A page of a ready file's chunks and their total count.
    #[instrument(skip(self))]
    pub async fn chunks(
        &self,
        tenant: &str,
        id: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(FileRecord, Vec<StoredChunk>, u64), FileOpError> {
        self.ingest.chunks(tenant, id, limit, offset).await
    }

    /// The original bytes of a file.
    #[instrument(skip(self))]
    pub async fn content(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(FileRecord, Vec<u8>), FileOpError> {
        self.ingest.content(tenant, id).await
    }

    /// Deletes a file, its chunks from both indexes and, when no other file shares them, its blob.
    #[instrument(skip(self))]
    pub async fn delete_file(&self, tenant: &str, id: &str) -> Result<FileRecord, FileOpError> {
        let deleted = self.ingest.delete(tenant, id).await?;
        // The deletion's `file.deleted` deliveries are in the outbox now.
        self.webhooks.wake();
        Ok(deleted)
    }

    /// Subscribes to file events (all tenants; filter by `tenant` and `file_id`). Subscribe before reading
    /// a file's state, so no change in between is lost.
    pub fn file_events(&self) -> broadcast::Receiver<FileEvent> {
        self.ingest.subscribe()
    }
}

//! Ingestion: uploads are stored durably and queued; a bounded pool of workers extracts them in the
//! background (`queued -> processing -> ready | failed`) with progress, and every change is published as
//! a [`FileEvent`].
//!
//! What runs where: upload streaming, SQLite and event fan-out run on the async runtime; extraction runs in
//! a worker process under hard limits ([`isolate`]), at most `ingest_workers` at a time; transcription of
//! audio runs on one dedicated OS thread per file. The queue itself is the `files` table, so it survives restarts: files
//! found `processing` at start are queued again. Nothing here holds a lock across an await.

pub mod asr;
pub mod definitions;
pub mod isolate;
mod upload;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use definitions::{PipelineDef, Pipelines};
pub use upload::{RETRY_AFTER_SECS, UploadError, UploadRequest, sanitize_filename};

use crate::index::service::SearchService;
use crate::store::{FileFilter, Store, StoreError, StoredChunk};
use crate::types::{Document, FileError, FileRecord, FileStatus, Progress};

/// Bytes read from an upload body at a time.
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Events buffered for slow subscribers before they see a lag (and re-read the database).
const EVENT_BUFFER: usize = 1024;

/// Settings of the ingestion service.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest upload in bytes.
    pub max_file_size: u64,
    /// Parallel extraction workers.
    pub workers: usize,
    /// Most queued files before uploads are refused with 503.
    pub max_queued: u64,
}

/// A change of a file's state, published to `/events` subscribers and `?wait=true` uploads.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileEvent {
    pub file_id: String,
    #[serde(skip)]
    pub tenant: String,
    pub status: FileStatus,
    pub progress: Progress,
    pub error: Option<FileError>,
}

impl FileEvent {
    /// The event describing a record's current state.
    pub fn of(file: &FileRecord) -> FileEvent {
        FileEvent {
            file_id: file.id.clone(),
            tenant: file.tenant.clone(),
            status: file.status,
            progress: file.progress.clone(),
            error: file.error.clone(),
        }
    }
}

/// Failures of file operations other than upload.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// No such file for this tenant.
    #[error("no file with id {0}")]
    NotFound(String),
    /// The file has no extraction result yet (or failed).
    #[error("file {id} is {status}, not ready")]
    NotReady { id: String, status: &'static str },
    /// The file is data (batch input or output), stored but never extracted.
    #[error(
        "file {id} was uploaded with purpose {purpose}: it is data, not a document, and has no extracted text; read its bytes from /v1/files/{id}/content"
    )]
    NotExtracted { id: String, purpose: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Shared {
    store: Store,
    search: SearchService,
    pipelines: Pipelines,
    config: IngestConfig,
    events: broadcast::Sender<FileEvent>,
    wake: Notify,
    shutdown: CancellationToken,
    /// The speech recognition engine, set once at start (audio files wait for it).
    asr: std::sync::OnceLock<crate::models::asr::AsrHandle>,
    /// Extraction worker processes.
    isolation: isolate::Pool,
}

/// The ingestion service: uploads, file queries and the worker pool.
#[derive(Clone)]
pub struct Ingest {
    shared: Arc<Shared>,
}

impl Ingest {
    /// Creates the service; call [`start`](Self::start) to run the workers.
    pub fn new(
        store: Store,
        search: SearchService,
        pipelines: Pipelines,
        config: IngestConfig,
    ) -> Ingest {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ingest {
            shared: Arc::new(Shared {
                store,
                search,
                pipelines,
                isolation: isolate::Pool::new(config.workers),
                config,
                events,
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                asr: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Re-queues files interrupted by a crash and starts the workers.
    pub async fn start(&self) -> Result<Vec<JoinHandle<()>>, StoreError> {
        let requeued = self.shared.store.requeue_interrupted().await?;
        let removed = self.shared.store.collect_garbage().await?;
        tracing::info!(
            requeued,
            orphan_blobs_removed = removed,
            workers = self.shared.config.workers,
            "ingestion starting"
        );
        Ok((0..self.shared.config.workers)
            .map(|n| tokio::spawn(worker::run(Arc::clone(&self.shared), n)))
            .collect())
    }

    /// Sets the speech recognition engine used by the `transcribe` step and the transcription endpoints
    /// (once; later calls are ignored).
    pub fn set_asr(&self, asr: crate::models::asr::AsrHandle) {
        let _ = self.shared.asr.set(asr);
    }

    /// The speech recognition engine, when one was set.
    fn asr(&self) -> Option<&crate::models::asr::AsrHandle> {
        self.shared.asr.get()
    }

    /// Asks the workers to stop after their current file (an unfinished file is re-queued at next start).
    pub fn stop(&self) {
        self.shared.shutdown.cancel();
    }

    /// The pipeline definitions in force.
    fn pipelines(&self) -> &Pipelines {
        &self.shared.pipelines
    }

    /// Subscribes to file events (all tenants; filter by `tenant` and `file_id`).
    pub fn subscribe(&self) -> broadcast::Receiver<FileEvent> {
        self.shared.events.subscribe()
    }

    /// One file.
    pub async fn file(&self, tenant: &str, id: &str) -> Result<FileRecord, FileOpError> {
        self.shared
            .store
            .file(tenant, id)
            .await?
            .ok_or_else(|| FileOpError::NotFound(id.to_owned()))
    }

    /// A page of files and the total count matching the filter.
    pub async fn list(
        &self,
        tenant: &str,
        filter: &FileFilter,
    ) -> Result<(Vec<FileRecord>, u64), FileOpError> {
        Ok(self.shared.store.list_files(tenant, filter).await?)
    }

    /// The extracted document of a ready file.
    pub async fn document(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(FileRecord, Document), FileOpError> {
        let file = self.file(tenant, id).await?;
        if file.status != FileStatus::Ready {
            return Err(FileOpError::NotReady {
                id: id.to_owned(),
                status: file.status.as_str(),
            });
        }
        if crate::store::is_data_purpose(file.purpose.as_deref()) {
            return Err(FileOpError::NotExtracted {
                id: id.to_owned(),
                purpose: file.purpose.unwrap_or_default(),
            });
        }
        let doc = self
            .shared
            .store
            .document(tenant, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("ready file {id} has no extraction")))?;
        Ok((file, doc))
    }

    /// A page of a ready file's chunks and their total count.
    pub async fn chunks(
        &self,
        tenant: &str,
        id: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(FileRecord, Vec<StoredChunk>, u64), FileOpError> {
        let file = self.file(tenant, id).await?;
        if file.status != FileStatus::Ready {
            return Err(FileOpError::NotReady {
                id: id.to_owned(),
                status: file.status.as_str(),
            });
        }
        let (chunks, total) = self
            .shared
            .store
            .chunks_of_file(tenant, id, limit, offset)
            .await?
            .ok_or_else(|| FileOpError::NotFound(id.to_owned()))?;
        Ok((file, chunks, total))
    }

    /// The original bytes of a file.
    pub async fn content(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(FileRecord, Vec<u8>), FileOpError> {
        let file = self.file(tenant, id).await?;
        let bytes = self
            .shared
            .store
            .blobs()
            .read(&file.sha256)
            .await
            .map_err(StoreError::from)?;
        Ok((file, bytes))
    }

    /// Deletes a file, its chunks from both indexes and, when no other file shares them, its blob,
    /// extraction and chunks.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<FileRecord, FileOpError> {
        let file = self
            .shared
            .store
            .delete_file(tenant, id)
            .await?
            .ok_or_else(|| FileOpError::NotFound(id.to_owned()))?;
        // The record is gone first, so a failure here leaves only index entries that the start-up
        // consistency check removes.
        if let Err(e) = self.shared.search.remove_file(tenant, id).await {
            tracing::error!(file_id = id, error = %e, "cannot remove the file from the indexes");
        }
        Ok(file)
    }

    /// Waits until the file is ready or failed, or `timeout` passes; returns its latest record.
    pub async fn wait_done(
        &self,
        tenant: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<FileRecord, FileOpError> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Read after subscribing, so no change between the read and the wait can be missed.
            let file = self.file(tenant, id).await?;
            if file.status.is_terminal() {
                return Ok(file);
            }
            let changed = async {
                loop {
                    match events.recv().await {
                        Ok(e) if e.file_id == id => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.file(tenant, id).await;
            }
        }
    }
}

impl Shared {
    fn publish(&self, file: &FileRecord) {
        // No subscribers is fine.
        let _ = self.events.send(FileEvent::of(file));
    }

    /// Records and publishes a processing file's progress.
    async fn report(&self, file: &FileRecord, progress: Progress) {
        if self.store.set_progress(&file.id, &progress).await.is_ok() {
            let mut updated = file.clone();
            updated.progress = progress;
            self.publish(&updated);
        }
    }
}

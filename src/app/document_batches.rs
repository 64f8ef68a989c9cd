//! Document batches: many files, or the members of ZIP archives, uploaded in one request. Each part is
//! streamed to the blob store and becomes an ordinary file (queued, extracted, deduplicated as a single
//! upload is); a part that is a plain ZIP archive is opened under the zip-bomb guard and each member becomes
//! a file (paths sanitised, nested archives refused). A part or member refused at upload is kept in the
//! batch with its reason. The batch is stored when the request's last part is in; a request that fails
//! before (bad form, too many files, a full queue, a broken body) leaves nothing behind.

use std::io::Cursor;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tracing::instrument;

pub use crate::store::{BatchItemRow, DocumentBatchRow};
pub use crate::types::Metadata;

use super::App;
use crate::extract::archive::{Folder, Member, MemberError};
use crate::extract::detect::{ZIP_MIME, is_archive, zip_format};
use crate::extract::{DetectError, ExtractError, Limits};
use crate::pipeline::{UploadError, UploadRequest};
use crate::store::{NewBatchItem, StagedBlob, StoreError};
use crate::types::{FileError, FileStatus};

/// Most batches in one page of the list.
pub const MAX_LIST_LIMIT: u32 = 100;
/// Members read ahead of the uploads while a ZIP archive is expanded.
const MEMBERS_AHEAD: usize = 2;
/// Bytes read from a part's start to tell a ZIP archive from the rest.
const HEAD_BYTES: usize = 4096;

/// A batch with every item and its file's current state.
#[derive(Debug, Clone)]
pub struct DocumentBatch {
    pub row: DocumentBatchRow,
    pub items: Vec<BatchItemRow>,
}

/// Where one item of a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// Refused at upload (see its error).
    Rejected,
    /// Its file was deleted since.
    Deleted,
    /// Its file's status.
    File(FileStatus),
}

impl ItemState {
    /// The state of a stored item.
    pub fn of(item: &BatchItemRow) -> ItemState {
        match (&item.file, &item.file_id) {
            (Some(f), _) => ItemState::File(f.status),
            (None, Some(_)) => ItemState::Deleted,
            (None, None) => ItemState::Rejected,
        }
    }

    /// True when nothing more will happen to the item.
    pub fn is_terminal(self) -> bool {
        match self {
            ItemState::File(s) => s.is_terminal(),
            ItemState::Rejected | ItemState::Deleted => true,
        }
    }
}

/// How many items of a batch are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub total: u64,
    pub queued: u64,
    pub processing: u64,
    pub ready: u64,
    pub failed: u64,
    pub rejected: u64,
    pub deleted: u64,
}

impl BatchCounts {
    /// Counts these states.
    pub fn of(states: impl IntoIterator<Item = ItemState>) -> BatchCounts {
        let mut c = BatchCounts::default();
        for s in states {
            c.total += 1;
            match s {
                ItemState::Rejected => c.rejected += 1,
                ItemState::Deleted => c.deleted += 1,
                ItemState::File(FileStatus::Queued) => c.queued += 1,
                ItemState::File(FileStatus::Processing) => c.processing += 1,
                ItemState::File(FileStatus::Ready) => c.ready += 1,
                ItemState::File(FileStatus::Failed) => c.failed += 1,
            }
        }
        c
    }

    /// Items nothing more will happen to.
    pub fn done(&self) -> u64 {
        self.total - self.queued - self.processing
    }
}

impl DocumentBatch {
    /// The counts of its items' states.
    pub fn counts(&self) -> BatchCounts {
        BatchCounts::of(self.items.iter().map(ItemState::of))
    }

    /// The client's metadata.
    pub fn metadata(&self) -> Option<Metadata> {
        self.row
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
    }
}

/// Why a document batch operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocumentBatchError {
    #[error("no document batch with id {0}")]
    NotFound(String),
    #[error("{message}")]
    Invalid {
        message: String,
        param: &'static str,
    },
    #[error(
        "a document batch holds at most {limit} files (DOCPIPE_MAX_BATCH_FILES), counting the members of its ZIP archives"
    )]
    TooManyFiles { limit: usize },
    /// The ingestion queue is full, or the body could not be read: nothing of the batch was kept.
    #[error(transparent)]
    Upload(UploadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>, param: &'static str) -> DocumentBatchError {
    DocumentBatchError::Invalid {
        message: message.into(),
        param,
    }
}

/// A document batch being received: parts are added as they stream in, then it is stored at once.
/// Dropped unsettled (the client went away mid-request), it deletes the files it stored, as [`abort`] does.
///
/// [`abort`]: BatchUpload::abort
pub struct BatchUpload {
    app: App,
    tenant: String,
    metadata: Option<Metadata>,
    items: Vec<NewBatchItem>,
    /// Stored as a batch, or its files deleted.
    settled: bool,
}

impl Drop for BatchUpload {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let ids = self.file_ids();
        if ids.is_empty() {
            return;
        }
        let (app, tenant) = (self.app.clone(), self.tenant.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { delete_files(&app, &tenant, &ids).await });
        }
    }
}

async fn delete_files(app: &App, tenant: &str, ids: &[String]) {
    for file_id in ids {
        if let Err(e) = app.delete_file(tenant, file_id).await {
            tracing::warn!(%file_id, error = %e, "could not delete a file of an abandoned batch");
        }
    }
}

impl App {
    /// Starts receiving a document batch for `tenant`.
    pub fn begin_document_batch(&self, tenant: &str) -> BatchUpload {
        BatchUpload {
            app: self.clone(),
            tenant: tenant.to_owned(),
            metadata: None,
            items: Vec::new(),
            settled: false,
        }
    }

    /// A tenant's document batch with its items' current states.
    #[instrument(skip(self))]
    pub async fn document_batch(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<DocumentBatch, DocumentBatchError> {
        let (row, items) = self
            .store
            .document_batch(tenant, id)
            .await?
            .ok_or_else(|| DocumentBatchError::NotFound(id.to_owned()))?;
        Ok(DocumentBatch { row, items })
    }

    /// A page of a tenant's document batches, newest first, after the batch `after` (which must exist); at most
    /// [`MAX_LIST_LIMIT`] + 1, so a caller can tell whether more follow.
    #[instrument(skip(self))]
    pub async fn document_batches(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DocumentBatch>, DocumentBatchError> {
        if let Some(a) = after {
            self.document_batch(tenant, a).await?;
        }
        let rows = self
            .store
            .document_batches(tenant, after, limit.min(MAX_LIST_LIMIT + 1))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.document_batch(tenant, &row.id).await?);
        }
        Ok(out)
    }
}

impl BatchUpload {
    /// Sets the metadata every file of the batch gets. It must come before the first file.
    pub fn set_metadata(&mut self, metadata: Metadata) -> Result<(), DocumentBatchError> {
        if !self.items.is_empty() {
            return Err(invalid(
                "the metadata part must come before the first file part (it applies to every file)",
                "metadata",
            ));
        }
        if self.metadata.is_some() {
            return Err(invalid("only one metadata part is allowed", "metadata"));
        }
        crate::types::check_metadata(&metadata).map_err(|m| invalid(m, "metadata"))?;
        self.metadata = Some(metadata);
        Ok(())
    }

    /// Receives one part: a document becomes a file (or an item refused with its reason); a plain ZIP
    /// archive is expanded into its members. Errors end the whole batch (call [`abort`](Self::abort)).
    pub async fn add(
        &mut self,
        filename: &str,
        body: impl AsyncRead + Unpin,
    ) -> Result<(), DocumentBatchError> {
        self.check_room()?;
        let ingest = self.app.ingest.clone();
        let max_batch = self.app.config.max_batch_size;
        let staged = match ingest.stage(body, max_batch).await {
            Ok(s) => s,
            Err(e @ UploadError::TooLarge { .. }) => {
                self.refuse(filename, None, None, e.code(), e.to_string());
                return Ok(());
            }
            Err(e) => return Err(fatal(e)),
        };
        match open_folder(&staged, self.app.config.max_file_size, max_batch).await {
            Ok(None) => self.store_file(filename, None, None, staged).await,
            Ok(Some(folder)) => {
                let archive = crate::pipeline::sanitize_filename(filename);
                let expanded = self.expand(folder, &archive).await;
                staged.discard().await;
                expanded
            }
            Err(e) => {
                staged.discard().await;
                self.refuse(filename, None, None, e.code(), format!("the archive: {e}"));
                Ok(())
            }
        }
    }

    /// Stores the batch; its id is in the answer.
    pub async fn finish(mut self) -> Result<DocumentBatch, DocumentBatchError> {
        if self.items.is_empty() {
            return Err(invalid(
                "a document batch needs at least one `file` part",
                "file",
            ));
        }
        let id = format!("docbatch-{}", uuid::Uuid::new_v4().simple());
        let metadata = self
            .metadata
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?;
        let inserted = self
            .app
            .store
            .insert_document_batch(&id, &self.tenant, metadata.as_deref(), &self.items)
            .await;
        if let Err(e) = inserted {
            self.abort().await;
            return Err(e.into());
        }
        self.settled = true;
        // A batch whose files were all done already has its `document_batch.completed` delivery now.
        self.app.webhooks.wake();
        tracing::info!(batch_id = %id, items = self.items.len(), "document batch stored");
        self.app.document_batch(&self.tenant, &id).await
    }

    /// Deletes the files stored so far: a batch that failed leaves nothing behind.
    pub async fn abort(mut self) {
        delete_files(&self.app, &self.tenant, &self.file_ids()).await;
        self.settled = true;
    }

    fn file_ids(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|i| i.outcome.as_ref().ok().cloned())
            .collect()
    }

    fn check_room(&self) -> Result<(), DocumentBatchError> {
        let limit = self.app.config.max_batch_files;
        if self.items.len() >= limit {
            return Err(DocumentBatchError::TooManyFiles { limit });
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        filename: &str,
        path: Option<String>,
        archive: Option<&str>,
        code: &str,
        message: String,
    ) {
        self.items.push(NewBatchItem {
            filename: crate::pipeline::sanitize_filename(filename),
            path,
            archive: archive.map(str::to_owned),
            outcome: Err(FileError {
                code: code.to_owned(),
                message,
            }),
        });
    }

    /// Admits and records one staged document, as a single upload would.
    async fn store_file(
        &mut self,
        filename: &str,
        path: Option<String>,
        archive: Option<&str>,
        staged: StagedBlob,
    ) -> Result<(), DocumentBatchError> {
        if let Err(e) = self.app.ingest.admit(1).await {
            staged.discard().await;
            return Err(fatal(e));
        }
        let req = UploadRequest {
            tenant: &self.tenant,
            filename,
            purpose: None,
            metadata: self.metadata.as_ref(),
        };
        match self.app.ingest.commit_staged(&req, staged).await {
            Ok(file) => {
                self.items.push(NewBatchItem {
                    filename: file.filename.clone(),
                    path,
                    archive: archive.map(str::to_owned),
                    outcome: Ok(file.id),
                });
                Ok(())
            }
            Err(e @ (UploadError::TooLarge { .. } | UploadError::Detect(_))) => {
                self.refuse(filename, path, archive, e.code(), e.to_string());
                Ok(())
            }
            Err(e) => Err(fatal(e)),
        }
    }

    /// Uploads the members of a ZIP archive, read on a blocking thread a few members ahead.
    async fn expand(
        &mut self,
        folder: Folder<std::fs::File>,
        archive: &str,
    ) -> Result<(), DocumentBatchError> {
        let (tx, mut rx) = mpsc::channel::<Member>(MEMBERS_AHEAD);
        let reader = tokio::task::spawn_blocking(move || {
            let mut folder = folder;
            for index in folder.files() {
                if tx.blocking_send(folder.read(index)).is_err() {
                    return;
                }
            }
        });
        let mut members = 0usize;
        let result: Result<(), DocumentBatchError> = async {
            while let Some(member) = rx.recv().await {
                members += 1;
                self.check_room()?;
                match member {
                    Member::File { path, bytes } if is_archive(&bytes) => {
                        let name = base_name(&path);
                        self.refuse(
                            &name,
                            Some(path),
                            Some(archive),
                            "nested_archive",
                            "an archive inside the archive: nested archives are not expanded; send them as parts of their own".to_owned(),
                        );
                    }
                    Member::File { path, bytes } => {
                        let staged = self
                            .app
                            .ingest
                            .stage(Cursor::new(bytes), self.app.config.max_file_size)
                            .await
                            .map_err(fatal)?;
                        self.store_file(&base_name(&path), Some(path), Some(archive), staged)
                            .await?;
                    }
                    Member::Refused { path, error } => {
                        let (code, message) = match &error {
                            MemberError::TooLarge { limit } => (
                                UploadError::TooLarge { limit: *limit }.code(),
                                error.to_string(),
                            ),
                            MemberError::Extract(e) => (e.code(), e.to_string()),
                        };
                        self.refuse(&base_name(&path), Some(path), Some(archive), code, message);
                    }
                }
            }
            Ok(())
        }
        .await;
        drop(rx);
        let _ = reader.await;
        result?;
        if members == 0 {
            self.refuse(
                archive,
                None,
                None,
                UploadError::Detect(DetectError::Empty).code(),
                "the archive holds no files".to_owned(),
            );
        }
        Ok(())
    }
}

/// An error that ends the whole batch.
fn fatal(e: UploadError) -> DocumentBatchError {
    match e {
        UploadError::Store(s) => DocumentBatchError::Store(s),
        other => DocumentBatchError::Upload(other),
    }
}

/// The last component of a member's path.
fn base_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// Opens a staged part as a folder when it is a plain ZIP archive (not a ZIP-based document); `Ok(None)`
/// for anything else, which is uploaded as it is. An archive refused by the zip-bomb guard is an error.
async fn open_folder(
    staged: &StagedBlob,
    max_member: u64,
    max_total: u64,
) -> Result<Option<Folder<std::fs::File>>, ExtractError> {
    let path = staged.path().to_owned();
    tokio::task::spawn_blocking(move || -> Result<_, ExtractError> {
        use std::io::Read as _;
        let Ok(mut file) = std::fs::File::open(&path) else {
            return Ok(None);
        };
        let mut head = Vec::with_capacity(HEAD_BYTES);
        let _ = (&mut file).take(HEAD_BYTES as u64).read_to_end(&mut head);
        if !head.starts_with(b"PK\x03\x04") {
            return Ok(None);
        }
        let Ok(zip) = zip::ZipArchive::new(file) else {
            return Ok(None);
        };
        match zip_format(&zip, &head) {
            Err(DetectError::Unsupported { detected }) if detected == ZIP_MIME => {}
            _ => return Ok(None),
        }
        Folder::new(
            zip,
            max_member,
            max_total,
            Limits::default().max_inflate_ratio,
        )
        .map(Some)
    })
    .await
    .map_err(|e| ExtractError::Corrupt(format!("reading the archive failed: {e}")))?
}

//! Accepting an upload: stream it to the blob store under a size limit, detect its format from its bytes,
//! record it, and wake a worker. The client's filename is only ever stored as text, never used as a path.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Ingest, UPLOAD_CHUNK};
use crate::extract::{DetectError, detect};
use crate::store::{NewFile, StagedBlob, StoreError, doc_key};
use crate::types::{FileRecord, Metadata};

/// Longest filename kept (in characters).
const MAX_FILENAME_CHARS: usize = 255;
/// Seconds a client should wait before retrying when the queue is full.
pub const RETRY_AFTER_SECS: u64 = 10;

/// Who uploads what.
pub struct UploadRequest<'a> {
    pub tenant: &'a str,
    /// The client's name for the file (sanitised before it is stored).
    pub filename: &'a str,
    /// OpenAI Files API `purpose`, when uploaded there.
    pub purpose: Option<&'a str>,
    /// The client's metadata (checked by the caller).
    pub metadata: Option<&'a Metadata>,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("the ingestion queue is full ({queued} files waiting); retry later")]
    Overloaded { queued: u64 },
    #[error("reading the upload failed: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UploadError {
    /// The machine-readable code a client sees for this refusal (the API's error code).
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::TooLarge { .. } => "file_too_large",
            UploadError::Detect(DetectError::Empty) => "empty_file",
            UploadError::Detect(DetectError::Unsupported { .. }) => "unsupported_file_type",
            UploadError::Detect(DetectError::Mismatch { .. }) => "content_type_mismatch",
            UploadError::Overloaded { .. } => "overloaded",
            UploadError::Read(_) => "invalid_request",
            UploadError::Store(_) => "internal_error",
        }
    }
}

impl Ingest {
    /// Stores an upload read from `body` and queues it for extraction (or marks it ready at once when the
    /// same content was extracted before).
    pub async fn upload(
        &self,
        req: &UploadRequest<'_>,
        body: impl AsyncRead + Unpin,
    ) -> Result<FileRecord, UploadError> {
        if !crate::store::is_data_purpose(req.purpose) {
            self.admit(1).await?;
        }
        let staged = self.stage(body, self.shared.config.max_file_size).await?;
        self.commit_staged(req, staged).await
    }

    /// Refuses `n` more files when the queue already holds `max_queued` (data files are never counted).
    pub async fn admit(&self, n: u64) -> Result<(), UploadError> {
        let queued = self.shared.store.count_queued().await?;
        if queued.saturating_add(n) > self.shared.config.max_queued.max(n) {
            return Err(UploadError::Overloaded { queued });
        }
        Ok(())
    }

    /// Streams `body` into the blob store's staging area, refusing it past `limit` bytes.
    pub async fn stage(
        &self,
        mut body: impl AsyncRead + Unpin,
        limit: u64,
    ) -> Result<StagedBlob, UploadError> {
        let mut staged = self
            .shared
            .store
            .blobs()
            .stage()
            .await
            .map_err(StoreError::from)?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let copied: Result<(), UploadError> = async {
            loop {
                let n = body.read(&mut buf).await.map_err(UploadError::Read)?;
                if n == 0 {
                    return Ok(());
                }
                if staged.size() + n as u64 > limit {
                    return Err(UploadError::TooLarge { limit });
                }
                staged.write(&buf[..n]).await.map_err(StoreError::from)?;
            }
        }
        .await;
        let copied = match copied {
            Ok(()) => staged
                .flush()
                .await
                .map_err(|e| UploadError::Store(e.into())),
            Err(e) => Err(e),
        };
        match copied {
            Ok(()) => Ok(staged),
            Err(e) => {
                staged.discard().await;
                Err(e)
            }
        }
    }

    /// Detects a staged upload's format, commits its bytes and records the file (queued, or ready at once
    /// when it is data or its content was extracted before). Admission ([`admit`](Self::admit)) is the
    /// caller's. A staged blob larger than `max_file_size` is refused.
    pub async fn commit_staged(
        &self,
        req: &UploadRequest<'_>,
        staged: StagedBlob,
    ) -> Result<FileRecord, UploadError> {
        let shared = &self.shared;
        let limit = shared.config.max_file_size;
        if staged.size() > limit {
            staged.discard().await;
            return Err(UploadError::TooLarge { limit });
        }
        let filename = sanitize_filename(req.filename);
        // The file is at most `max_file_size` bytes, so reading it whole for detection is bounded.
        let bytes = match tokio::fs::read(staged.path()).await {
            Ok(b) => b,
            Err(e) => {
                staged.discard().await;
                return Err(StoreError::from(e).into());
            }
        };
        let format = match detect(&bytes, &filename) {
            Ok(f) => f,
            Err(e) => {
                staged.discard().await;
                return Err(e.into());
            }
        };
        drop(bytes);
        let size = staged.size();
        let sha256 = shared
            .store
            .blobs()
            .commit(staged)
            .await
            .map_err(StoreError::from)?;
        let id = format!("file-{}", uuid::Uuid::new_v4().simple());
        let key = doc_key(req.tenant, &sha256, format.name());
        let metadata = req
            .metadata
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("metadata: {e}")))?;
        let file = shared
            .store
            .insert_file(&NewFile {
                id: &id,
                tenant: req.tenant,
                filename: &filename,
                content_type: format.mime(),
                format: format.name(),
                category: format.category(),
                size,
                sha256: &sha256,
                doc_key: &key,
                purpose: req.purpose,
                metadata: metadata.as_deref(),
            })
            .await?;
        tracing::info!(file_id = %file.id, format = format.name(), size, deduplicated = file.deduplicated, "file uploaded");
        shared.publish(&file);
        shared.wake.notify_one();
        Ok(file)
    }
}

/// Keeps the last path component, drops control characters, bounds the length.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILENAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize_filename;

    #[test]
    fn filenames_are_never_paths() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_filename(".."), "upload");
        assert_eq!(sanitize_filename("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(sanitize_filename(""), "upload");
        assert_eq!(sanitize_filename(&"x".repeat(1000)).len(), 255);
    }
}

//! Accepting an upload: stream it to the blob store under a size limit, detect its format from its bytes,
//! record it, and wake a worker. The client's filename is only ever stored as text, never used as a path.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Ingest, UPLOAD_CHUNK};
use crate::extract::{DetectError, detect};
use crate::store::{NewFile, StoreError, doc_key};
use crate::types::FileRecord;

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

impl Ingest {
    /// Stores an upload read from `body` and queues it for extraction (or marks it ready at once when the
    /// same content was extracted before).
    pub async fn upload(
        &self,
        req: &UploadRequest<'_>,
        mut body: impl AsyncRead + Unpin,
    ) -> Result<FileRecord, UploadError> {
        let shared = &self.shared;
        let queued = shared.store.count_queued().await?;
        if queued >= shared.config.max_queued && !crate::store::is_data_purpose(req.purpose) {
            return Err(UploadError::Overloaded { queued });
        }
        let limit = shared.config.max_file_size;
        let mut staged = shared
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
        if let Err(e) = copied {
            staged.discard().await;
            return Err(e);
        }
        let filename = sanitize_filename(req.filename);
        // The file is at most `max_file_size` bytes, so reading it whole for detection is bounded.
        let bytes = tokio::fs::read(staged.path())
            .await
            .map_err(StoreError::from)?;
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
            })
            .await?;
        tracing::info!(file_id = %file.id, format = format.name(), size, deduplicated = file.deduplicated, "file uploaded");
        shared.publish(&file);
        shared.wake.notify_one();
        Ok(file)
    }
}

/// Keeps the last path component, drops control characters, bounds the length.
fn sanitize_filename(name: &str) -> String {
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

//! Content-addressed blob files: `blobs/ab/abcdef...` named by the sha256 of their bytes. Uploads are
//! streamed into `tmp/` while hashed, fsynced, then renamed into place, so a blob is never half-written.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::fs;
use tokio::io::AsyncWriteExt;

/// The blob directory of a data directory.
#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    staging: PathBuf,
}

/// An upload being written: bytes go to a temp file while their hash and size are computed.
pub struct StagedBlob {
    path: PathBuf,
    file: fs::File,
    hasher: Sha256,
    size: u64,
}

impl StagedBlob {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.file.write_all(bytes).await
    }

    /// Waits until every written byte has reached the file, so it can be read back through its path
    /// (tokio's file writes complete in the background).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The temp file (for sniffing the content before committing).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Discards the upload.
    pub async fn discard(self) {
        drop(self.file);
        // Best effort: the staging directory is also cleared at start-up.
        let _ = fs::remove_file(&self.path).await;
    }
}

impl BlobStore {
    /// Opens the blob and staging directories under `data_dir`.
    pub async fn open(data_dir: &Path) -> std::io::Result<BlobStore> {
        let store = BlobStore {
            root: data_dir.join("blobs"),
            staging: data_dir.join("tmp"),
        };
        fs::create_dir_all(&store.root).await?;
        fs::create_dir_all(&store.staging).await?;
        Ok(store)
    }

    /// Starts a new upload.
    pub async fn stage(&self) -> std::io::Result<StagedBlob> {
        let path = self.staging.join(uuid::Uuid::new_v4().simple().to_string());
        let file = fs::File::create(&path).await?;
        Ok(StagedBlob {
            path,
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Makes a staged upload durable under its hash and returns the hash. Identical content already
    /// stored is kept and the new copy dropped.
    pub async fn commit(&self, mut staged: StagedBlob) -> std::io::Result<String> {
        staged.file.flush().await?;
        staged.file.sync_all().await?;
        let sha = hex::encode(staged.hasher.finalize_reset());
        let dest = self.path_of(&sha);
        if fs::try_exists(&dest).await? {
            fs::remove_file(&staged.path).await?;
            return Ok(sha);
        }
        let dir = dest
            .parent()
            .expect("blob paths have a parent directory. This is a bug.");
        fs::create_dir_all(dir).await?;
        fs::rename(&staged.path, &dest).await?;
        // Make the rename itself durable.
        fs::File::open(dir).await?.sync_all().await?;
        Ok(sha)
    }

    /// Where the blob with this hash lives. The hash is validated, so it can never escape the directory.
    pub fn path_of(&self, sha: &str) -> PathBuf {
        assert!(is_sha256(sha), "blob names are sha256 hex. This is a bug.");
        self.root.join(&sha[..2]).join(sha)
    }

    /// Reads a whole blob.
    pub async fn read(&self, sha: &str) -> std::io::Result<Vec<u8>> {
        fs::read(self.path_of(sha)).await
    }

    /// Deletes a blob; a missing one is not an error.
    pub async fn delete(&self, sha: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path_of(sha)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Hashes of every stored blob.
    pub async fn list(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut dirs = fs::read_dir(&self.root).await?;
        while let Some(dir) = dirs.next_entry().await? {
            if !dir.file_type().await?.is_dir() {
                continue;
            }
            let mut files = fs::read_dir(dir.path()).await?;
            while let Some(f) = files.next_entry().await? {
                if let Some(name) = f.file_name().to_str().filter(|n| is_sha256(n)) {
                    out.push(name.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// Removes upload temp files left by a crash.
    pub async fn clear_staging(&self) -> std::io::Result<()> {
        let mut entries = fs::read_dir(&self.staging).await?;
        while let Some(e) = entries.next_entry().await? {
            fs::remove_file(e.path()).await?;
        }
        Ok(())
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

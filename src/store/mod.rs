//! Persistent storage: SQLite (through sqlx) for file records, extraction results and segments, and a
//! content-addressed blob directory for the original bytes. Everything lives under the data directory.
//!
//! Durability: SQLite runs in WAL mode with `synchronous = FULL`, so a committed transaction survives a
//! crash; a blob is fsynced and renamed into place before its file record is inserted, so every
//! acknowledged upload has its bytes on disk. Blobs left without a record by a crash are removed at start.
//! One process at a time: opening takes the directory's lock ([`lock`]) before the database.

mod batches;
mod blobs;
mod chunks;
mod document_batches;
mod documents;
pub use documents::doc_key;
mod files;
mod keys;
mod lock;
mod webhooks;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use batches::{BatchRequest, BatchResult, BatchRow, NewBatch};
pub use blobs::{BlobStore, StagedBlob};
pub use chunks::{FileChunk, StoredChunk, chunk_id, parse_chunk_id};
pub use document_batches::{BatchItemRow, DocumentBatchRow, NewBatchItem};
pub use files::{DATA_PURPOSES, DEFAULT_PURPOSE, FileFilter, NewFile, is_data_purpose};
pub use keys::KeyRow;
pub use webhooks::{Attempt, DeliveryRow, WebhookRow};

/// How long a writer waits for SQLite's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in the pool; SQLite allows one writer at a time anyway.
const MAX_CONNECTIONS: u32 = 8;

/// Storage failures. Not-found is not an error: lookups return `Option`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("blob storage error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Another process holds the data directory's lock.
    #[error("{}", lock::in_use_message(dir, pid))]
    InUse { dir: PathBuf, pid: String },
}

/// The database and blob store of one data directory.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    blobs: BlobStore,
    /// Held while any clone lives: no other process opens this data directory meanwhile.
    _lock: Arc<lock::DataDirLock>,
}

impl Store {
    /// Opens (creating when missing) the store under `data_dir` and applies migrations. The directory's lock
    /// is taken first: a directory another process has open is [`StoreError::InUse`].
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        tokio::fs::create_dir_all(data_dir).await?;
        let lock = Arc::new(lock::DataDirLock::acquire(data_dir)?);
        let db_path: PathBuf = data_dir.join("docpipe.sqlite");
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&db_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let blobs = BlobStore::open(data_dir).await?;
        Ok(Store {
            pool,
            blobs,
            _lock: lock,
        })
    }

    /// Starts a write transaction holding SQLite's write lock from the start (`BEGIN IMMEDIATE`). A deferred
    /// transaction that reads first and writes later fails with "database is locked" when another writer got
    /// in between, without waiting for the busy timeout.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool, waiting for in-flight queries.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Removes blobs that no file record references (left by a crash between writing a blob and
    /// inserting its record) and stale upload temp files. Returns how many blobs were removed.
    pub async fn collect_garbage(&self) -> Result<usize, StoreError> {
        self.blobs.clear_staging().await?;
        let mut removed = 0;
        for sha in self.blobs.list().await? {
            if !self.sha_in_use(&sha).await? {
                self.blobs.delete(&sha).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Milliseconds since the Unix epoch, the unit of every stored time.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

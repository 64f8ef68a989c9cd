//! File records: insert, look up, list, claim for processing, progress, finish, delete.
//! Every read takes the tenant, so one tenant can never see another's files.

use chrono::{DateTime, TimeZone, Utc};
// Dynamic SQL here only splices the constant column list and constant conditions, never input.
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, now_ms};
use crate::types::{Category, FileError, FileRecord, FileStatus, Progress};

/// What an upload inserts.
pub struct NewFile<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub format: &'a str,
    pub category: Category,
    pub size: u64,
    pub sha256: &'a str,
    pub doc_key: &'a str,
    pub purpose: Option<&'a str>,
    /// The client's metadata, a JSON object of strings.
    pub metadata: Option<&'a str>,
}

/// Purposes of files that are data for the service (batch input and output), not documents: they are
/// stored and ready at once, never extracted, chunked or indexed.
pub const DATA_PURPOSES: [&str; 2] = ["batch", "batch_output"];

/// True for a purpose in [`DATA_PURPOSES`].
pub fn is_data_purpose(purpose: Option<&str>) -> bool {
    purpose.is_some_and(|p| DATA_PURPOSES.contains(&p))
}

/// The purpose of a file uploaded without one (through the pipeline API), as the OpenAI Files API shows it.
pub const DEFAULT_PURPOSE: &str = "user_data";

/// Filters and page for listing files. Every filter applies in the query, before the page is cut.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub status: Option<FileStatus>,
    pub category: Option<Category>,
    /// Only files uploaded with this purpose (a file uploaded without one has [`DEFAULT_PURPOSE`]).
    pub purpose: Option<String>,
    /// Only files after this one in the listing's order (newest first): a cursor. A cursor that names no
    /// file of the tenant gives an empty page; callers check it first to say so.
    pub after: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

pub(super) const COLUMNS: &str = "id, tenant, filename, content_type, format, category, size, sha256, purpose, status, \
     progress_done, progress_total, progress_unit, error_code, error_message, deduplicated, created_at, updated_at, metadata";

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(super) fn record(row: &SqliteRow) -> Result<FileRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let category: String = row.try_get("category")?;
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    let metadata: Option<String> = row.try_get("metadata")?;
    let metadata = metadata
        .map(|m| serde_json::from_str(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("file metadata: {e}")))?;
    Ok(FileRecord {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        format: row.try_get("format")?,
        category: Category::parse(&category)
            .ok_or_else(|| StoreError::Corrupt(format!("category {category}")))?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or_default(),
        sha256: row.try_get("sha256")?,
        purpose: row.try_get("purpose")?,
        status: FileStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
        progress: Progress {
            done: u64::try_from(row.try_get::<i64, _>("progress_done")?).unwrap_or_default(),
            total: u64::try_from(row.try_get::<i64, _>("progress_total")?).unwrap_or_default(),
            unit: row.try_get("progress_unit")?,
        },
        error: code.map(|code| FileError {
            code,
            message: message.unwrap_or_default(),
        }),
        deduplicated: row.try_get::<i64, _>("deduplicated")? != 0,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
        metadata,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Inserts a `queued` file record (a `ready` one for a [data purpose](is_data_purpose)). When the content was already extracted (`doc_key` has an extraction),
    /// or another file with it is queued, processing or ready, the file is marked deduplicated: a worker
    /// claims it only once no twin is processing ([`claim_next`](Self::claim_next)) and then only indexes
    /// the stored chunks under the new file.
    pub async fn insert_file(&self, new: &NewFile<'_>) -> Result<FileRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let (status, extracted) = if is_data_purpose(new.purpose) {
            (FileStatus::Ready, false)
        } else {
            let extracted = sqlx::query(
                "SELECT 1 FROM extractions WHERE doc_key = ?1 UNION ALL \
                 SELECT 1 FROM files WHERE doc_key = ?1 AND status IN ('queued', 'processing', 'ready') LIMIT 1",
            )
            .bind(new.doc_key)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            (FileStatus::Queued, extracted)
        };
        sqlx::query(
            "INSERT INTO files (id, tenant, filename, content_type, format, category, size, sha256, doc_key, purpose, \
             status, deduplicated, created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.id)
        .bind(new.tenant)
        .bind(new.filename)
        .bind(new.content_type)
        .bind(new.format)
        .bind(new.category.as_str())
        .bind(to_i64(new.size))
        .bind(new.sha256)
        .bind(new.doc_key)
        .bind(new.purpose)
        .bind(status.as_str())
        .bind(i64::from(extracted))
        .bind(now)
        .bind(now)
        .bind(new.metadata)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.file(new.tenant, new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted file vanished".into()))
    }

    /// One file of a tenant.
    pub async fn file(&self, tenant: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM files WHERE id = ? AND tenant = ?"
        )))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// A file whatever its tenant: for maintenance (index repair), never for requests.
    pub async fn file_any_tenant(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM files WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// Every ready file (all tenants), oldest first: for rebuilding indexes.
    pub async fn ready_files(&self) -> Result<Vec<FileRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM files WHERE status = 'ready' ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// A page of a tenant's files, newest first, and the total matching the filter (after the cursor, when
    /// there is one).
    pub async fn list_files(
        &self,
        tenant: &str,
        filter: &FileFilter,
    ) -> Result<(Vec<FileRecord>, u64), StoreError> {
        let status = filter.status.map(FileStatus::as_str);
        let category = filter.category.map(Category::as_str);
        // The cursor compares in the listing's own order, (created_at, id) descending.
        let condition = "tenant = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR category = ?3) \
             AND (?4 IS NULL OR COALESCE(purpose, ?5) = ?4) \
             AND (?6 IS NULL OR (created_at, id) < (SELECT created_at, id FROM files WHERE id = ?6 AND tenant = ?1))";
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM files WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT ?7 OFFSET ?8"
        )))
        .bind(tenant)
        .bind(status)
        .bind(category)
        .bind(filter.purpose.as_deref())
        .bind(DEFAULT_PURPOSE)
        .bind(filter.after.as_deref())
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.offset))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM files WHERE {condition}"
        )))
        .bind(tenant)
        .bind(status)
        .bind(category)
        .bind(filter.purpose.as_deref())
        .bind(DEFAULT_PURPOSE)
        .bind(filter.after.as_deref())
        .fetch_one(&self.pool)
        .await?;
        let files = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        Ok((files, u64::try_from(total).unwrap_or_default()))
    }

    /// Files waiting for a worker (over all tenants).
    pub async fn count_queued(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Atomically takes the oldest queued file whose content no other file is processing (a twin waits
    /// for the first upload's extraction and chunks instead of repeating them) and marks it `processing`.
    pub async fn claim_next(&self) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE files SET status = 'processing', attempts = attempts + 1, updated_at = ?1, \
             progress_done = 0, progress_total = 0, progress_unit = '' \
             WHERE id = (SELECT id FROM files WHERE status = 'queued' AND doc_key NOT IN \
             (SELECT doc_key FROM files WHERE status = 'processing') ORDER BY created_at, id LIMIT 1) \
             RETURNING {COLUMNS}"
        )))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// How many times processing of a file has started (to stop retrying a file that kills the process).
    pub async fn attempts(&self, id: &str) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT attempts FROM files WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Puts files that were mid-processing when the process stopped back in the queue.
    pub async fn requeue_interrupted(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE files SET status = 'queued', updated_at = ? WHERE status = 'processing'",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records progress of a processing file.
    pub async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE files SET progress_done = ?, progress_total = ?, progress_unit = ?, updated_at = ? \
             WHERE id = ? AND status = 'processing'",
        )
        .bind(to_i64(progress.done))
        .bind(to_i64(progress.total))
        .bind(&progress.unit)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a file failed with a reason. False when the file no longer exists (deleted meanwhile).
    pub async fn mark_failed(&self, id: &str, error: &FileError) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE files SET status = 'failed', error_code = ?, error_message = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&error.code)
        .bind(&error.message)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// True while a file record with this id exists (any tenant).
    pub async fn file_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM files WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Deletes an extraction (and so its chunks) that no file uses: what a worker stored for a file that
    /// was deleted while it was processed.
    pub async fn delete_unused_extraction(&self, doc_key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM extractions WHERE doc_key = ?1 AND NOT EXISTS (SELECT 1 FROM files WHERE doc_key = ?1)",
        )
        .bind(doc_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Fails the queued twins of a file that just failed (same tenant and content: the same work would fail
    /// the same way) with its error; returns their ids.
    pub async fn fail_queued_twins(
        &self,
        id: &str,
        error: &FileError,
    ) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar(
            "UPDATE files SET status = 'failed', error_code = ?1, error_message = ?2, updated_at = ?3 \
             WHERE status = 'queued' AND id != ?4 AND doc_key = (SELECT doc_key FROM files WHERE id = ?4) \
             RETURNING id",
        )
        .bind(&error.code)
        .bind(&error.message)
        .bind(now_ms())
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Deletes a tenant's file record. Returns the record, or `None` when there was none. The blob and the
    /// extraction are deleted too when no other file uses them.
    pub async fn delete_file(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<FileRecord>, StoreError> {
        let Some(file) = self.file(tenant, id).await? else {
            return Ok(None);
        };
        let mut tx = self.write_tx().await?;
        let doc_key: String = sqlx::query_scalar("SELECT doc_key FROM files WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM files WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM extractions WHERE doc_key = ?1 AND NOT EXISTS (SELECT 1 FROM files WHERE doc_key = ?1)")
            .bind(&doc_key)
            .execute(&mut *tx)
            .await?;
        let sha_left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE sha256 = ?")
            .bind(&file.sha256)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if sha_left == 0 {
            self.blobs.delete(&file.sha256).await?;
        }
        Ok(Some(file))
    }

    /// True when any file record references the blob.
    pub(super) async fn sha_in_use(&self, sha: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE sha256 = ?")
            .bind(sha)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }
}

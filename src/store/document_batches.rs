//! Document batches: the batch, and one item per part or archive member, each pointing at the file it
//! became or holding the reason it was refused. File states are read from `files` when a batch is read.

// The only dynamic part of these queries is the constant column list of `files`.
use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use super::files::{COLUMNS, record};
use super::{Store, StoreError, now_ms};
use crate::types::{FileError, FileRecord};

/// One item of a batch as stored when the batch is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatchItem {
    pub filename: String,
    /// The member's sanitised path inside its archive.
    pub path: Option<String>,
    /// The archive's name, for a member of one.
    pub archive: Option<String>,
    /// The file the item became, or why it was refused.
    pub outcome: Result<String, FileError>,
}

/// A stored document batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentBatchRow {
    pub id: String,
    pub tenant: String,
    /// The client's metadata, a JSON object.
    pub metadata: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One item with the current record of its file (`None` when it was refused, or its file was deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItemRow {
    pub ordinal: u32,
    pub filename: String,
    pub path: Option<String>,
    pub archive: Option<String>,
    pub file_id: Option<String>,
    /// Why the item was refused at upload.
    pub error: Option<FileError>,
    pub file: Option<FileRecord>,
}

const BATCH_COLUMNS: &str = "id, tenant, metadata, created_at";

fn batch_row(row: &sqlx::sqlite::SqliteRow) -> Result<DocumentBatchRow, StoreError> {
    Ok(DocumentBatchRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a batch and its items in one transaction, then seals it (see `migrations/0008`).
    pub async fn insert_document_batch(
        &self,
        id: &str,
        tenant: &str,
        metadata: Option<&str>,
        items: &[NewBatchItem],
    ) -> Result<DocumentBatchRow, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO document_batches (id, tenant, metadata, created_at, sealed) VALUES (?, ?, ?, ?, 0)",
        )
        .bind(id)
        .bind(tenant)
        .bind(metadata)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (ordinal, item) in items.iter().enumerate() {
            let (file_id, error) = match &item.outcome {
                Ok(f) => (Some(f.as_str()), None),
                Err(e) => (None, Some(e)),
            };
            sqlx::query(
                "INSERT INTO document_batch_items (batch_id, ordinal, filename, path, archive, file_id, \
                 error_code, error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(i64::try_from(ordinal).unwrap_or(i64::MAX))
            .bind(&item.filename)
            .bind(&item.path)
            .bind(&item.archive)
            .bind(file_id)
            .bind(error.map(|e| e.code.as_str()))
            .bind(error.map(|e| e.message.as_str()))
            .execute(&mut *tx)
            .await?;
        }
        // Sealing fires `document_batch.completed` when its files were all done before the batch was stored.
        sqlx::query("UPDATE document_batches SET sealed = 1 WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DocumentBatchRow {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            metadata: metadata.map(str::to_owned),
            created_at: now,
        })
    }

    /// A tenant's batch with every item and its file's current record.
    pub async fn document_batch(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(DocumentBatchRow, Vec<BatchItemRow>)>, StoreError> {
        let Some(row) = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM document_batches WHERE id = ? AND tenant = ?"
        )))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let batch = batch_row(&row)?;
        let files: HashMap<String, FileRecord> = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM files WHERE tenant = ? AND id IN \
             (SELECT file_id FROM document_batch_items WHERE batch_id = ? AND file_id IS NOT NULL)"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| record(r).map(|f| (f.id.clone(), f)))
        .collect::<Result<_, _>>()?;
        let items = sqlx::query(
            "SELECT ordinal, filename, path, archive, file_id, error_code, error_message \
             FROM document_batch_items WHERE batch_id = ? ORDER BY ordinal",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| -> Result<BatchItemRow, StoreError> {
            let file_id: Option<String> = r.try_get("file_id")?;
            let code: Option<String> = r.try_get("error_code")?;
            let message: Option<String> = r.try_get("error_message")?;
            Ok(BatchItemRow {
                ordinal: u32::try_from(r.try_get::<i64, _>("ordinal")?).unwrap_or_default(),
                filename: r.try_get("filename")?,
                path: r.try_get("path")?,
                archive: r.try_get("archive")?,
                file: file_id.as_ref().and_then(|f| files.get(f).cloned()),
                file_id,
                error: code.map(|code| FileError {
                    code,
                    message: message.unwrap_or_default(),
                }),
            })
        })
        .collect::<Result<_, _>>()?;
        Ok(Some((batch, items)))
    }

    /// A page of a tenant's batches, newest first, after the batch `after` when given.
    pub async fn document_batches(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DocumentBatchRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM document_batches WHERE tenant = ?1 AND (?2 IS NULL OR \
             (created_at, id) < (SELECT created_at, id FROM document_batches WHERE id = ?2 AND tenant = ?1)) \
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        )))
        .bind(tenant)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_row).collect()
    }
}

//! Extraction results: a document's metadata and ordered segments, stored once per content (`doc_key`)
//! and shared by every file with that content.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, StoreError, now_ms};
use crate::types::{Document, Segment};

/// The key of an extraction result: the tenant, the content hash and the format it was read as (the same
/// bytes uploaded as `.txt` and `.md` are extracted differently). Results are shared within a tenant only,
/// so deduplication never reveals another tenant's content.
pub fn doc_key(tenant: &str, sha256: &str, format: &str) -> String {
    format!("{tenant}/{sha256}:{format}")
}

impl Store {
    /// Stores a document (once per content: storing the same key again keeps the first).
    pub async fn save_document(&self, doc_key: &str, doc: &Document) -> Result<(), StoreError> {
        let now = now_ms();
        let metadata =
            serde_json::to_string(&doc.metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO extractions (doc_key, metadata, segments, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (doc_key) DO NOTHING",
        )
        .bind(doc_key)
        .bind(&metadata)
        .bind(i64::try_from(doc.segments.len()).unwrap_or(i64::MAX))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            for (ordinal, seg) in doc.segments.iter().enumerate() {
                let kind = serde_json::to_value(seg.kind)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let location = serde_json::to_string(&seg.location)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query("INSERT INTO segments (doc_key, ordinal, kind, text, location) VALUES (?, ?, ?, ?, ?)")
                    .bind(doc_key)
                    .bind(i64::try_from(ordinal).unwrap_or(i64::MAX))
                    .bind(kind.as_str().unwrap_or_default())
                    .bind(&seg.text)
                    .bind(location)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// True when this content has been extracted already.
    pub async fn has_document(&self, doc_key: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM extractions WHERE doc_key = ?")
            .bind(doc_key)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The extracted document of a tenant's file, or `None` when the file is unknown or not extracted.
    pub async fn document(
        &self,
        tenant: &str,
        file_id: &str,
    ) -> Result<Option<Document>, StoreError> {
        let Some(key) = sqlx::query_scalar::<_, String>(
            "SELECT doc_key FROM files WHERE id = ? AND tenant = ?",
        )
        .bind(file_id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let Some(metadata) =
            sqlx::query_scalar::<_, String>("SELECT metadata FROM extractions WHERE doc_key = ?")
                .bind(&key)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let metadata: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT kind, text, location FROM segments WHERE doc_key = ? ORDER BY ordinal",
        )
        .bind(&key)
        .fetch_all(&self.pool)
        .await?;
        let mut segments = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let location: String = row.try_get("location")?;
            segments.push(Segment {
                kind: serde_json::from_value(serde_json::Value::String(kind))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                text: row.try_get("text")?,
                location: serde_json::from_str(&location)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        Ok(Some(Document { segments, metadata }))
    }
}

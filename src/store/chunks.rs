//! Chunks and their embeddings, stored with the extraction they come from.

use sqlx::Row;

use super::{Store, StoreError};

/// A chunk as stored: text, merged location (JSON), token count and its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    pub ordinal: u32,
    pub text: String,
    pub location: serde_json::Value,
    pub token_count: u32,
    pub embedding: Vec<f32>,
}

/// A chunk with the file it is read through, for search results and listings.
#[derive(Debug, Clone, PartialEq)]
pub struct FileChunk {
    pub file_id: String,
    pub filename: String,
    pub chunk: StoredChunk,
}

/// The index id of a file's chunk.
pub fn chunk_id(file_id: &str, ordinal: u32) -> String {
    format!("{file_id}#{ordinal}")
}

/// Splits an index chunk id into file id and ordinal.
pub fn parse_chunk_id(id: &str) -> Option<(&str, u32)> {
    let (file, ordinal) = id.rsplit_once('#')?;
    Some((file, ordinal.parse().ok()?))
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn chunk_of(row: &sqlx::sqlite::SqliteRow) -> Result<StoredChunk, StoreError> {
    let location: String = row.try_get("location")?;
    let embedding: Option<Vec<u8>> = row.try_get("embedding")?;
    Ok(StoredChunk {
        ordinal: u32::try_from(row.try_get::<i64, _>("ordinal")?).unwrap_or_default(),
        text: row.try_get("text")?,
        location: serde_json::from_str(&location)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        token_count: u32::try_from(row.try_get::<i64, _>("token_count")?).unwrap_or_default(),
        embedding: embedding.as_deref().map(decode).unwrap_or_default(),
    })
}

impl Store {
    /// Replaces the chunks of an extraction and records the embedding model, in one transaction.
    pub async fn save_chunks(
        &self,
        doc_key: &str,
        chunks: &[StoredChunk],
        model: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM chunks WHERE doc_key = ?")
            .bind(doc_key)
            .execute(&mut *tx)
            .await?;
        for c in chunks {
            sqlx::query(
                "INSERT INTO chunks (doc_key, ordinal, text, location, token_count, embedding) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(doc_key)
            .bind(i64::from(c.ordinal))
            .bind(&c.text)
            .bind(c.location.to_string())
            .bind(i64::from(c.token_count))
            .bind(encode(&c.embedding))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE extractions SET embed_model = ? WHERE doc_key = ?")
            .bind(model)
            .bind(doc_key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The embedding model of an extraction's stored chunks, when it has been chunked and embedded.
    pub async fn chunks_model(&self, doc_key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT embed_model FROM extractions WHERE doc_key = ?",
        )
        .bind(doc_key)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// All chunks of an extraction, in order.
    pub async fn chunks_of_doc(&self, doc_key: &str) -> Result<Vec<StoredChunk>, StoreError> {
        let rows = sqlx::query("SELECT ordinal, text, location, token_count, embedding FROM chunks WHERE doc_key = ? ORDER BY ordinal")
            .bind(doc_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(chunk_of).collect()
    }

    /// A page of a tenant's file's chunks (without embeddings) and the total count; `None` for an unknown file.
    pub async fn chunks_of_file(
        &self,
        tenant: &str,
        file_id: &str,
        limit: u32,
        offset: u32,
    ) -> Result<Option<(Vec<StoredChunk>, u64)>, StoreError> {
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
        let rows = sqlx::query(
            "SELECT ordinal, text, location, token_count, NULL AS embedding FROM chunks WHERE doc_key = ? \
             ORDER BY ordinal LIMIT ? OFFSET ?",
        )
        .bind(&key)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks WHERE doc_key = ?")
            .bind(&key)
            .fetch_one(&self.pool)
            .await?;
        let chunks = rows.iter().map(chunk_of).collect::<Result<Vec<_>, _>>()?;
        Ok(Some((chunks, u64::try_from(total).unwrap_or_default())))
    }

    /// Looks up chunks by index id for a tenant (unknown ids and other tenants' ids are skipped), without
    /// embeddings.
    pub async fn chunks_by_ids(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<FileChunk>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some((file_id, ordinal)) = parse_chunk_id(id) else {
                continue;
            };
            let row = sqlx::query(
                "SELECT f.id AS file_id, f.filename, c.ordinal, c.text, c.location, c.token_count, NULL AS embedding \
                 FROM files f JOIN chunks c ON c.doc_key = f.doc_key \
                 WHERE f.id = ? AND f.tenant = ? AND c.ordinal = ? AND f.status = 'ready'",
            )
            .bind(file_id)
            .bind(tenant)
            .bind(i64::from(ordinal))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                out.push(FileChunk {
                    file_id: row.try_get("file_id")?,
                    filename: row.try_get("filename")?,
                    chunk: chunk_of(&row)?,
                });
            }
        }
        Ok(out)
    }

    /// Index ids of every chunk of every ready file (for the start-up consistency check).
    pub async fn ready_chunk_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.id AS file_id, c.ordinal FROM files f JOIN chunks c ON c.doc_key = f.doc_key WHERE f.status = 'ready'",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let ordinal: i64 = r.try_get("ordinal")?;
                Ok(chunk_id(
                    &r.try_get::<String, _>("file_id")?,
                    u32::try_from(ordinal).unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Marks a processing file ready. False when there is no processing file with this id any more (it was
    /// deleted while it was processed): the caller must then take its chunks out of the indexes.
    pub async fn mark_ready(&self, file_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE files SET status = 'ready', error_code = NULL, error_message = NULL, updated_at = ?, \
             progress_done = MAX(progress_done, progress_total) WHERE id = ? AND status = 'processing'",
        )
        .bind(super::now_ms())
        .bind(file_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_round_trip() {
        let id = chunk_id("file-abc", 7);
        assert_eq!(id, "file-abc#7");
        assert_eq!(parse_chunk_id(&id), Some(("file-abc", 7)));
        assert_eq!(parse_chunk_id("nohash"), None);
        assert_eq!(decode(&encode(&[1.5, -2.0, 0.25])), vec![1.5, -2.0, 0.25]);
    }
}

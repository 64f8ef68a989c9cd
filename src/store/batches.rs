//! OpenAI batches and their requests. Every read takes the tenant, except the runner's, which works over
//! all tenants. A status change is one conditional `UPDATE`, so concurrent moves (a cancel racing the
//! runner's finish) cannot both win.

// The only dynamic parts of these queries are the constant column list and a constant timestamp column.
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, now_ms};
use crate::types::BatchStatus;

/// A stored batch with its request counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub id: String,
    pub tenant: String,
    /// The key that created it (`None` on an open server): its requests run as that key's tenant.
    pub key_id: Option<String>,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: BatchStatus,
    /// The client's metadata, a JSON object.
    pub metadata: Option<String>,
    /// Validation errors, a JSON array of `{code, message, param, line}`.
    pub errors: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Unix milliseconds of each transition (`None` until it happens).
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: i64,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    /// Requests in the batch, finished with a 2xx answer, finished otherwise.
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// What creating a batch stores.
pub struct NewBatch<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub key_id: Option<&'a str>,
    pub endpoint: &'a str,
    pub input_file_id: &'a str,
    pub completion_window: &'a str,
    pub metadata: Option<&'a str>,
    /// Unix milliseconds after which unfinished requests expire.
    pub expires_at: i64,
}

/// One request of a batch, as validated from its input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// 1-based line number in the input file.
    pub line: u64,
    pub custom_id: String,
    pub url: String,
    /// The request body, JSON.
    pub body: String,
}

/// The result line of a finished request.
pub struct BatchResult<'a> {
    pub line: u64,
    /// True for a 2xx answer (it goes to the output file; the others to the error file).
    pub ok: bool,
    /// The whole output line, JSON.
    pub result: &'a str,
}

const COLUMNS: &str = "id, tenant, key_id, endpoint, input_file_id, completion_window, status, metadata, errors, \
     output_file_id, error_file_id, created_at, in_progress_at, expires_at, finalizing_at, completed_at, failed_at, \
     expired_at, cancelling_at, cancelled_at, \
     (SELECT COUNT(*) FROM batch_requests r WHERE r.batch_id = batches.id) AS total, \
     (SELECT COUNT(*) FROM batch_requests r WHERE r.batch_id = batches.id AND r.status = 'completed') AS n_completed, \
     (SELECT COUNT(*) FROM batch_requests r WHERE r.batch_id = batches.id AND r.status = 'failed') AS n_failed";

fn count(row: &SqliteRow, name: &str) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or_default())
}

fn batch(row: &SqliteRow) -> Result<BatchRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(BatchRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        key_id: row.try_get("key_id")?,
        endpoint: row.try_get("endpoint")?,
        input_file_id: row.try_get("input_file_id")?,
        completion_window: row.try_get("completion_window")?,
        status: BatchStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("batch status {status}")))?,
        metadata: row.try_get("metadata")?,
        errors: row.try_get("errors")?,
        output_file_id: row.try_get("output_file_id")?,
        error_file_id: row.try_get("error_file_id")?,
        created_at: row.try_get("created_at")?,
        in_progress_at: row.try_get("in_progress_at")?,
        expires_at: row.try_get("expires_at")?,
        finalizing_at: row.try_get("finalizing_at")?,
        completed_at: row.try_get("completed_at")?,
        failed_at: row.try_get("failed_at")?,
        expired_at: row.try_get("expired_at")?,
        cancelling_at: row.try_get("cancelling_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        total: count(row, "total")?,
        completed: count(row, "n_completed")?,
        failed: count(row, "n_failed")?,
    })
}

/// The column holding the time a batch entered `status`.
fn time_column(status: BatchStatus) -> &'static str {
    match status {
        BatchStatus::Validating => "created_at",
        BatchStatus::Failed => "failed_at",
        BatchStatus::InProgress => "in_progress_at",
        BatchStatus::Finalizing => "finalizing_at",
        BatchStatus::Completed => "completed_at",
        BatchStatus::Expired => "expired_at",
        BatchStatus::Cancelling => "cancelling_at",
        BatchStatus::Cancelled => "cancelled_at",
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Stores a new batch in `validating`.
    pub async fn insert_batch(&self, new: &NewBatch<'_>) -> Result<BatchRow, StoreError> {
        sqlx::query(
            "INSERT INTO batches (id, tenant, key_id, endpoint, input_file_id, completion_window, status, metadata, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'validating', ?, ?, ?)",
        )
        .bind(new.id)
        .bind(new.tenant)
        .bind(new.key_id)
        .bind(new.endpoint)
        .bind(new.input_file_id)
        .bind(new.completion_window)
        .bind(new.metadata)
        .bind(now_ms())
        .bind(new.expires_at)
        .execute(&self.pool)
        .await?;
        self.batch(new.tenant, new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted batch vanished".into()))
    }

    /// One batch of a tenant.
    pub async fn batch(&self, tenant: &str, id: &str) -> Result<Option<BatchRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM batches WHERE id = ? AND tenant = ?"
        )))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch).transpose()
    }

    /// A page of a tenant's batches, newest first, after the batch `after` (a cursor); and whether more
    /// follow. `Ok(None)` when `after` names no batch of the tenant.
    pub async fn list_batches(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<(Vec<BatchRow>, bool)>, StoreError> {
        if let Some(after) = after
            && self.batch(tenant, after).await?.is_none()
        {
            return Ok(None);
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM batches WHERE tenant = ?1 AND (?2 IS NULL OR (created_at, id) < \
             (SELECT created_at, id FROM batches WHERE id = ?2 AND tenant = ?1)) \
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        )))
        .bind(tenant)
        .bind(after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut batches = rows.iter().map(batch).collect::<Result<Vec<_>, _>>()?;
        let more = batches.len() > limit as usize;
        batches.truncate(limit as usize);
        Ok(Some((batches, more)))
    }

    /// Batches the runner still has work on (every tenant), oldest first.
    pub async fn unfinished_batches(&self) -> Result<Vec<BatchRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM batches WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling') \
             ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch).collect()
    }

    /// Moves a batch from one of `from` to `to`, stamping the transition's time. False when the batch was in
    /// none of `from` (another move won).
    pub async fn move_batch(
        &self,
        id: &str,
        from: &[BatchStatus],
        to: BatchStatus,
    ) -> Result<bool, StoreError> {
        let from: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE batches SET status = ?1, {} = ?2 WHERE id = ?3 AND status IN ({})",
            time_column(to),
            from.join(", ")
        )))
        .bind(to.as_str())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores a validated batch's requests and moves it to `in_progress`, in one transaction.
    pub async fn start_batch(
        &self,
        id: &str,
        requests: &[BatchRequest],
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query(
            "UPDATE batches SET status = 'in_progress', in_progress_at = ? WHERE id = ? AND status = 'validating'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !moved {
            return Ok(false);
        }
        for r in requests {
            sqlx::query(
                "INSERT INTO batch_requests (batch_id, line, custom_id, url, body, status) \
                 VALUES (?, ?, ?, ?, ?, 'pending')",
            )
            .bind(id)
            .bind(to_i64(r.line))
            .bind(&r.custom_id)
            .bind(&r.url)
            .bind(&r.body)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Fails a batch in validation with its errors (a JSON array).
    pub async fn fail_batch(&self, id: &str, errors: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE batches SET status = 'failed', failed_at = ?, errors = ? WHERE id = ? AND status = 'validating'",
        )
        .bind(now_ms())
        .bind(errors)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Up to `limit` unfinished requests of a batch, in line order.
    pub async fn pending_requests(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<Vec<BatchRequest>, StoreError> {
        let rows = sqlx::query(
            "SELECT line, custom_id, url, body FROM batch_requests WHERE batch_id = ? AND status = 'pending' \
             ORDER BY line LIMIT ?",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BatchRequest {
                    line: u64::try_from(r.try_get::<i64, _>("line")?).unwrap_or_default(),
                    custom_id: r.try_get("custom_id")?,
                    url: r.try_get("url")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }

    /// Stores a finished request's result; a request finishes once (a second store is ignored).
    pub async fn finish_request(
        &self,
        id: &str,
        result: &BatchResult<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batch_requests SET status = ?, result = ? WHERE batch_id = ? AND line = ? AND status = 'pending'",
        )
        .bind(if result.ok { "completed" } else { "failed" })
        .bind(result.result)
        .bind(id)
        .bind(to_i64(result.line))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` result lines of a batch after line `after`, in line order: the 2xx ones (`ok`) or the
    /// others. Each with its line number, so a caller pages through without holding them all.
    pub async fn batch_results(
        &self,
        id: &str,
        ok: bool,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT line, result FROM batch_requests WHERE batch_id = ? AND status = ? AND line > ? \
             ORDER BY line LIMIT ?",
        )
        .bind(id)
        .bind(if ok { "completed" } else { "failed" })
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    u64::try_from(r.try_get::<i64, _>("line")?).unwrap_or_default(),
                    r.try_get::<Option<String>, _>("result")?
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// Records the output and error files of a finalized batch and moves it to its final status.
    pub async fn close_batch(
        &self,
        id: &str,
        from: BatchStatus,
        to: BatchStatus,
        output_file_id: Option<&str>,
        error_file_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE batches SET status = ?1, {} = ?2, output_file_id = ?3, error_file_id = ?4 \
             WHERE id = ?5 AND status = ?6",
            time_column(to)
        )))
        .bind(to.as_str())
        .bind(now_ms())
        .bind(output_file_id)
        .bind(error_file_id)
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Fails every unfinished request of an expired batch with `batch_expired` (OpenAI's result line for
    /// it: no response, an error); returns how many.
    pub async fn expire_pending(&self, id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE batch_requests SET status = 'failed', result = json_object('id', 'batch_req_' || ?1 || '_' || line, \
             'custom_id', custom_id, 'response', NULL, 'error', json_object('code', 'batch_expired', 'message', \
             'This request could not be executed before the completion window expired.')) \
             WHERE batch_id = ?1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

//! Webhook endpoints and their outbox. Deliveries are inserted by triggers (migration 0006) in the same
//! transaction as the change that causes them; this module reads what is due and records attempts.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now_ms};

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    /// The signing secret (`whsec_...`).
    pub secret: String,
    /// The previous secret and until when (Unix ms) it still signs.
    pub old_secret: Option<String>,
    pub old_secret_until: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery (one event for one endpoint) with its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// `attempts` when the retry schedule last (re)started.
    pub schedule_start: u32,
    pub next_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<u64>,
}

/// One attempt to deliver.
pub struct Attempt<'a> {
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub latency_ms: u64,
}

const HOOK_COLUMNS: &str = "id, tenant, url, events, description, secret, old_secret, old_secret_until, enabled, \
     disabled_reason, created_at, updated_at";

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_type, d.payload, d.created_at, d.status, d.attempts, \
     d.schedule_start, d.next_attempt_at, d.delivered_at, \
     (SELECT status_code FROM webhook_attempts a WHERE a.delivery_id = d.id ORDER BY attempt DESC LIMIT 1) AS last_status_code, \
     (SELECT error FROM webhook_attempts a WHERE a.delivery_id = d.id ORDER BY attempt DESC LIMIT 1) AS last_error, \
     (SELECT latency_ms FROM webhook_attempts a WHERE a.delivery_id = d.id ORDER BY attempt DESC LIMIT 1) AS last_latency_ms";

fn hook(row: &SqliteRow) -> Result<WebhookRow, StoreError> {
    let events: String = row.try_get("events")?;
    Ok(WebhookRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        url: row.try_get("url")?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        description: row.try_get("description")?,
        secret: row.try_get("secret")?,
        old_secret: row.try_get("old_secret")?,
        old_secret_until: row.try_get("old_secret_until")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn delivery(row: &SqliteRow) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        status: row.try_get("status")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or_default(),
        schedule_start: u32::try_from(row.try_get::<i64, _>("schedule_start")?).unwrap_or_default(),
        next_attempt_at: row.try_get("next_attempt_at")?,
        delivered_at: row.try_get("delivered_at")?,
        last_status_code: row
            .try_get::<Option<i64>, _>("last_status_code")?
            .and_then(|c| u16::try_from(c).ok()),
        last_error: row.try_get("last_error")?,
        last_latency_ms: row
            .try_get::<Option<i64>, _>("last_latency_ms")?
            .and_then(|c| u64::try_from(c).ok()),
    })
}

impl Store {
    /// Stores a new endpoint.
    pub async fn insert_webhook(&self, w: &WebhookRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, tenant, url, events, description, secret, enabled, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
        )
        .bind(&w.id)
        .bind(&w.tenant)
        .bind(&w.url)
        .bind(w.events.join(","))
        .bind(&w.description)
        .bind(&w.secret)
        .bind(w.created_at)
        .bind(w.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One endpoint of a tenant.
    pub async fn webhook(&self, tenant: &str, id: &str) -> Result<Option<WebhookRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ? AND tenant = ?"
        )))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(hook).transpose()
    }

    /// A tenant's endpoints, newest first.
    pub async fn webhooks(&self, tenant: &str) -> Result<Vec<WebhookRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {HOOK_COLUMNS} FROM webhooks WHERE tenant = ? ORDER BY created_at DESC, id DESC"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hook).collect()
    }

    /// Deletes an endpoint and its deliveries; false when there was none.
    pub async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ? AND tenant = ?")
            .bind(id)
            .bind(tenant)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces an endpoint's secret; the old one keeps signing until `old_until` (Unix ms).
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        old_until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhooks SET old_secret = secret, old_secret_until = ?, secret = ?, updated_at = ? \
             WHERE id = ? AND tenant = ?",
        )
        .bind(old_until)
        .bind(secret)
        .bind(now_ms())
        .bind(id)
        .bind(tenant)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Turns an endpoint off (deliveries stop; pending ones wait) with the reason, or back on.
    pub async fn set_webhook_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhooks SET enabled = ?, disabled_reason = ?, updated_at = ? WHERE id = ?",
        )
        .bind(i64::from(enabled))
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` deliveries due now on enabled endpoints, oldest first, with their endpoints.
    pub async fn due_deliveries(
        &self,
        limit: u32,
    ) -> Result<Vec<(DeliveryRow, WebhookRow)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND w.enabled = 1 \
             ORDER BY d.next_attempt_at, d.id LIMIT ?"
        )))
        .bind(now_ms())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let deliveries = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        // Each endpoint once per round, however many of its deliveries are due.
        let mut hooks: std::collections::HashMap<String, WebhookRow> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            if !hooks.contains_key(&d.webhook_id) {
                let w = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ?"
                )))
                .bind(&d.webhook_id)
                .fetch_optional(&self.pool)
                .await?;
                match w.as_ref().map(hook).transpose()? {
                    Some(w) => hooks.insert(d.webhook_id.clone(), w),
                    None => continue,
                };
            }
            if let Some(w) = hooks.get(&d.webhook_id) {
                out.push((d, w.clone()));
            }
        }
        Ok(out)
    }

    /// Records an attempt and the delivery's next state: delivered, due again at `next` (Unix ms), or
    /// failed for good (`next` is `None` after an unsuccessful attempt). Returns the attempts made since
    /// the retry schedule (re)started.
    pub async fn record_attempt(
        &self,
        delivery_id: &str,
        attempt: &Attempt<'_>,
        delivered: bool,
        next: Option<i64>,
    ) -> Result<u32, StoreError> {
        let mut tx = self.write_tx().await?;
        let (n, start): (i64, i64) = sqlx::query_as(
            "UPDATE webhook_deliveries SET attempts = attempts + 1 WHERE id = ? RETURNING attempts, schedule_start",
        )
        .bind(delivery_id)
        .fetch_one(&mut *tx)
        .await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, latency_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(delivery_id)
        .bind(n)
        .bind(now)
        .bind(attempt.status_code.map(i64::from))
        .bind(attempt.error)
        .bind(i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        let (status, next_at, delivered_at) = match (delivered, next) {
            (true, _) => ("delivered", None, Some(now)),
            (false, Some(at)) => ("pending", Some(at), None),
            (false, None) => ("failed", None, None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, delivered_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(next_at)
        .bind(delivered_at)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u32::try_from(n - start).unwrap_or(u32::MAX))
    }

    /// An endpoint's deliveries, newest first.
    pub async fn deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.webhook_id = ? \
             ORDER BY d.created_at DESC, d.id DESC LIMIT ?"
        )))
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery).collect()
    }

    /// Makes a delivery of an endpoint due now with a fresh retry schedule; false when there is none.
    pub async fn redeliver(&self, webhook_id: &str, delivery_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, delivered_at = NULL, \
             schedule_start = attempts WHERE id = ? AND webhook_id = ?",
        )
        .bind(now_ms())
        .bind(delivery_id)
        .bind(webhook_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

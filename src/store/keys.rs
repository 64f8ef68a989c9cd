//! API keys: only the SHA-256 of each secret is stored. Revocation is a timestamp, so the audit trail keeps
//! the key's name and tenant.

// The only dynamic part of these queries is the constant column list.
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, now_ms};

/// A stored API key (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Public id (`key_...`).
    pub id: String,
    /// Human label.
    pub name: String,
    /// The tenant every request made with the key acts for.
    pub tenant: String,
    /// Scope names (`read`, `write`, `admin`).
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the secret.
    pub key_hash: String,
    /// The first characters of the secret, to recognise it in lists.
    pub prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds after which the key is refused.
    pub expires_at: Option<i64>,
    /// Unix milliseconds when the key was revoked.
    pub revoked_at: Option<i64>,
}

fn row_to_key(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRow, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(KeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tenant: row.try_get("tenant")?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        key_hash: row.try_get("key_hash")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const KEY_COLUMNS: &str =
    "id, name, tenant, scopes, key_hash, prefix, created_at, expires_at, revoked_at";

impl Store {
    /// Stores a new key; `created_at` is set here.
    pub async fn insert_key(&self, key: &KeyRow) -> Result<KeyRow, StoreError> {
        let mut key = key.clone();
        key.created_at = now_ms();
        sqlx::query(
            "INSERT INTO api_keys (id, name, tenant, scopes, key_hash, prefix, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.tenant)
        .bind(key.scopes.join(","))
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(key)
    }

    /// Every key that is not revoked (expired ones included: they answer 401 with their own message).
    pub async fn active_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_key).collect()
    }

    /// Every key, revoked ones included, newest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_key).collect()
    }

    /// Marks a key revoked. Returns the key, or `None` when there is no such key or it was already revoked.
    pub async fn revoke_key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if done == 0 {
            return Ok(None);
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_key).transpose()
    }

    /// Counts files by status over all tenants (for metrics).
    pub async fn count_files_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM files GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}

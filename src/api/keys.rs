//! `POST/GET/DELETE /api/v1/keys`: API key management (admin scope).

use super::json_body::JsonBody;
use chrono::{DateTime, TimeZone, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorCode};
use crate::app::App;
use crate::app::keys::{KeyRow, NewKey};

/// A key to create.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CreateKeyBody {
    /// A label for people (1-200 characters).
    pub name: String,
    /// What the key may do: `read` (list, read, search, chat, embed), `write` (also upload and delete),
    /// `admin` (also manage keys and read `/metrics`). Each includes the ones before it.
    pub scopes: Vec<String>,
    /// The tenant the key acts for (1-64 of `A-Z a-z 0-9 _ - .`); defaults to the creator's. Only the
    /// configured admin key may create keys for other tenants.
    #[oai(nullable)]
    pub tenant: Option<String>,
    /// When the key stops working (RFC 3339); never when absent.
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl poem_openapi::types::Example for CreateKeyBody {
    /// What Swagger UI's "Try it out" sends.
    fn example() -> CreateKeyBody {
        CreateKeyBody {
            name: "reporting job".into(),
            scopes: vec!["read".into()],
            tenant: None,
            expires_at: None,
        }
    }
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, Object)]
pub struct KeyObject {
    /// The key's id (for `DELETE /api/v1/keys/{id}`).
    pub id: String,
    /// Always `api_key`.
    pub object: String,
    /// Its label.
    pub name: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it expires, if ever.
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    #[oai(nullable)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key with its secret.
#[derive(Debug, Clone, Object)]
pub struct CreatedKey {
    /// The secret: send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`. It is shown only
    /// now; only its hash is stored.
    pub key: String,
    /// The key's record.
    #[oai(flatten)]
    pub record: KeyObject,
}

/// Keys.
#[derive(Debug, Clone, Object)]
pub struct KeyList {
    /// Always `list`.
    pub object: String,
    /// Newest first, revoked ones included.
    pub data: Vec<KeyObject>,
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl From<&KeyRow> for KeyObject {
    fn from(k: &KeyRow) -> KeyObject {
        KeyObject {
            id: k.id.clone(),
            object: "api_key".into(),
            name: k.name.clone(),
            tenant: k.tenant.clone(),
            scopes: k.scopes.clone(),
            prefix: k.prefix.clone(),
            created_at: time(k.created_at),
            expires_at: k.expires_at.map(time),
            revoked_at: k.revoked_at.map(time),
        }
    }
}

/// A created key.
#[derive(ApiResponse)]
pub enum CreateKeyResponse {
    /// The key, with its secret in `key` (shown once).
    #[oai(status = 201)]
    Created(Json<CreatedKey>),
}

/// The key management endpoints.
pub struct KeysApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// Create an API key
    ///
    /// Creates a key for a tenant with the given scopes. The answer carries the secret once, in `key`.
    #[oai(path = "/api/v1/keys", method = "post")]
    async fn create(
        &self,
        caller: Caller<Admin>,
        body: JsonBody<CreateKeyBody>,
    ) -> Result<CreateKeyResponse, ApiError> {
        let b = body.0;
        let (row, secret) = self
            .app
            .create_key(
                &caller.principal,
                NewKey {
                    name: b.name,
                    scopes: b.scopes,
                    tenant: b.tenant,
                    expires_at: b.expires_at,
                },
            )
            .await?;
        caller.audit("key.create", &row.id);
        Ok(CreateKeyResponse::Created(Json(CreatedKey {
            key: secret,
            record: KeyObject::from(&row),
        })))
    }

    /// List API keys
    ///
    /// Every key of the caller's tenant (all tenants for the configured admin key), without secrets.
    #[oai(path = "/api/v1/keys", method = "get")]
    async fn list(&self, caller: Caller<Admin>) -> Result<Json<KeyList>, ApiError> {
        let keys = self.app.keys(&caller.principal).await?;
        Ok(Json(KeyList {
            object: "list".into(),
            data: keys.iter().map(KeyObject::from).collect(),
        }))
    }

    /// Revoke an API key
    ///
    /// The key stops working at once (its next request gets 401).
    #[oai(path = "/api/v1/keys/:key_id", method = "delete")]
    async fn revoke(
        &self,
        caller: Caller<Admin>,
        key_id: Path<String>,
    ) -> Result<Json<KeyObject>, ApiError> {
        let row = self
            .app
            .revoke_key(&caller.principal, &key_id.0)
            .await?
            .ok_or_else(|| {
                ApiError::with_param(
                    ErrorCode::KeyNotFound,
                    format!("no active key with id {}", key_id.0),
                    Some("key_id"),
                )
            })?;
        caller.audit("key.revoke", &row.id);
        Ok(Json(KeyObject::from(&row)))
    }
}

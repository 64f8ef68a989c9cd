//! `/api/v1/webhooks`: endpoints that receive signed events (Standard Webhooks), their deliveries, secret
//! rotation and redelivery. A tenant admin manages its own tenant's endpoints.

use chrono::{DateTime, TimeZone, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::json_body::JsonBody;
use crate::app::App;
use crate::app::webhooks::{DeliveryRow, WebhookRow, WebhookSpec};

/// An endpoint to create.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CreateWebhookBody {
    /// Where events are POSTed: `http` or `https`, no credentials, resolving to a public address (private,
    /// loopback and reserved ones only where the operator allows them with `DOCPIPE_WEBHOOK_ALLOW_PRIVATE`).
    pub url: String,
    /// Event types: `file.ready`, `file.failed`, `file.deleted`, `document_batch.completed` (every file of a
    /// document batch done), `batch.completed`, `batch.failed`, `batch.cancelled`, `batch.expired`.
    pub events: Vec<String>,
    /// A note for people (up to 500 characters).
    #[oai(nullable)]
    pub description: Option<String>,
    /// Your own signing secret (`whsec_` + base64 of 24-64 bytes); one is generated when absent.
    #[oai(nullable)]
    pub secret: Option<String>,
}

impl poem_openapi::types::Example for CreateWebhookBody {
    fn example() -> CreateWebhookBody {
        CreateWebhookBody {
            url: "https://example.com/docpipe-events".into(),
            events: vec!["file.ready".into(), "file.failed".into()],
            description: Some("ingestion notifications".into()),
            secret: None,
        }
    }
}

/// A secret rotation.
#[derive(Debug, Clone, Object, Default)]
pub struct RotateSecretBody {
    /// The new secret (`whsec_...`); generated when absent.
    #[oai(nullable)]
    pub secret: Option<String>,
    /// Seconds the old secret keeps signing beside the new one (default 86400, at most 604800).
    #[oai(nullable)]
    pub grace_seconds: Option<u64>,
}

/// An endpoint (without its secret).
#[derive(Debug, Clone, Object)]
pub struct Webhook {
    /// Its id (`wh_...`).
    pub id: String,
    /// Always `webhook`.
    pub object: String,
    pub url: String,
    pub events: Vec<String>,
    #[oai(nullable)]
    pub description: Option<String>,
    /// False once deliveries kept failing (see `disabled_reason`); a redelivery turns it back on.
    pub enabled: bool,
    #[oai(nullable)]
    pub disabled_reason: Option<String>,
    /// Until when the previous secret still signs beside the current one, after a rotation.
    #[oai(nullable)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint with its signing secret (shown only when created or rotated).
#[derive(Debug, Clone, Object)]
pub struct WebhookWithSecret {
    /// The signing secret: verify each delivery's `webhook-signature` with it (any Standard Webhooks
    /// library does).
    pub secret: String,
    #[oai(flatten)]
    pub webhook: Webhook,
}

/// Endpoints.
#[derive(Debug, Clone, Object)]
pub struct WebhookList {
    /// Always `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<Webhook>,
}

/// One event for one endpoint and how its delivery went.
#[derive(Debug, Clone, Object)]
pub struct Delivery {
    /// The message id (`webhook-id`), the same on every attempt.
    pub id: String,
    pub event_type: String,
    /// `pending` (waiting for its next attempt), `delivered` or `failed` (retries used up).
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    #[oai(nullable)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status, error and latency.
    #[oai(nullable)]
    pub last_status_code: Option<u16>,
    #[oai(nullable)]
    pub last_error: Option<String>,
    #[oai(nullable)]
    pub last_latency_ms: Option<u64>,
    pub created_at: DateTime<Utc>,
    /// The JSON body sent: `{type, timestamp, data}`.
    pub payload: serde_json::Value,
}

/// Deliveries.
#[derive(Debug, Clone, Object)]
pub struct DeliveryList {
    /// Always `list`.
    pub object: String,
    /// Newest first.
    pub data: Vec<Delivery>,
}

/// A created endpoint.
#[derive(ApiResponse)]
pub enum CreateWebhookResponse {
    /// The endpoint, with its secret (shown once).
    #[oai(status = 201)]
    Created(Json<WebhookWithSecret>),
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl From<&WebhookRow> for Webhook {
    fn from(w: &WebhookRow) -> Webhook {
        let now = Utc::now().timestamp_millis();
        Webhook {
            id: w.id.clone(),
            object: "webhook".into(),
            url: w.url.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            previous_secret_expires_at: w.old_secret_until.filter(|u| *u > now).map(time),
            created_at: time(w.created_at),
            updated_at: time(w.updated_at),
        }
    }
}

impl From<&DeliveryRow> for Delivery {
    fn from(d: &DeliveryRow) -> Delivery {
        Delivery {
            id: d.id.clone(),
            event_type: d.event_type.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            next_attempt_at: d
                .next_attempt_at
                .filter(|_| d.status == "pending")
                .map(time),
            delivered_at: d.delivered_at.map(time),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            last_latency_ms: d.last_latency_ms,
            created_at: time(d.created_at),
            payload: serde_json::from_str(&d.payload).unwrap_or_default(),
        }
    }
}

fn with_secret(w: &WebhookRow) -> WebhookWithSecret {
    WebhookWithSecret {
        secret: w.secret.clone(),
        webhook: Webhook::from(w),
    }
}

/// The webhook endpoints.
pub struct WebhooksApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Create a webhook
    ///
    /// Events of the caller's tenant are POSTed to `url` as JSON `{type, timestamp, data}`, signed as the
    /// Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`:
    /// `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`). Failed deliveries are retried with exponential
    /// backoff over about a day; an endpoint whose delivery fails them all is disabled. The answer carries
    /// the secret once.
    #[oai(path = "/api/v1/webhooks", method = "post")]
    async fn create(
        &self,
        caller: Caller<Admin>,
        body: JsonBody<CreateWebhookBody>,
    ) -> Result<CreateWebhookResponse, ApiError> {
        let b = body.0;
        let row = self
            .app
            .create_webhook(
                &caller.tenant,
                WebhookSpec {
                    url: b.url,
                    events: b.events,
                    description: b.description,
                    secret: b.secret,
                },
            )
            .await?;
        caller.audit("webhook.create", &row.id);
        Ok(CreateWebhookResponse::Created(Json(with_secret(&row))))
    }

    /// List webhooks
    #[oai(path = "/api/v1/webhooks", method = "get")]
    async fn list(&self, caller: Caller<Admin>) -> Result<Json<WebhookList>, ApiError> {
        let rows = self.app.webhooks(&caller.tenant).await?;
        Ok(Json(WebhookList {
            object: "list".into(),
            data: rows.iter().map(Webhook::from).collect(),
        }))
    }

    /// Retrieve a webhook
    #[oai(path = "/api/v1/webhooks/:webhook_id", method = "get")]
    async fn retrieve(
        &self,
        caller: Caller<Admin>,
        webhook_id: Path<String>,
    ) -> Result<Json<Webhook>, ApiError> {
        let row = self.app.webhook(&caller.tenant, &webhook_id.0).await?;
        Ok(Json(Webhook::from(&row)))
    }

    /// Delete a webhook
    ///
    /// Deliveries stop at once; pending ones are dropped.
    #[oai(path = "/api/v1/webhooks/:webhook_id", method = "delete")]
    async fn delete(
        &self,
        caller: Caller<Admin>,
        webhook_id: Path<String>,
    ) -> Result<Json<Webhook>, ApiError> {
        let row = self
            .app
            .delete_webhook(&caller.tenant, &webhook_id.0)
            .await?;
        caller.audit("webhook.delete", &row.id);
        Ok(Json(Webhook::from(&row)))
    }

    /// Rotate a webhook's secret
    ///
    /// A new secret (generated, or yours) signs from now on; the old one keeps signing beside it (two
    /// signatures in `webhook-signature`) for `grace_seconds`, so a receiver can switch without missing a
    /// delivery. The answer carries the new secret once.
    #[oai(path = "/api/v1/webhooks/:webhook_id/rotate-secret", method = "post")]
    async fn rotate(
        &self,
        caller: Caller<Admin>,
        webhook_id: Path<String>,
        body: JsonBody<RotateSecretBody>,
    ) -> Result<Json<WebhookWithSecret>, ApiError> {
        let b = body.0;
        let row = self
            .app
            .rotate_webhook_secret(&caller.tenant, &webhook_id.0, b.secret, b.grace_seconds)
            .await?;
        caller.audit("webhook.rotate_secret", &row.id);
        Ok(Json(with_secret(&row)))
    }

    /// List a webhook's deliveries
    ///
    /// Newest first: each event's status, attempts, last response code, error and latency, next attempt.
    #[oai(path = "/api/v1/webhooks/:webhook_id/deliveries", method = "get")]
    async fn deliveries(
        &self,
        caller: Caller<Admin>,
        webhook_id: Path<String>,
        /// Most deliveries listed (1-1000, default 100).
        limit: Query<Option<u32>>,
    ) -> Result<Json<DeliveryList>, ApiError> {
        let rows = self
            .app
            .webhook_deliveries(&caller.tenant, &webhook_id.0, limit.0.unwrap_or(100))
            .await?;
        Ok(Json(DeliveryList {
            object: "list".into(),
            data: rows.iter().map(Delivery::from).collect(),
        }))
    }

    /// Redeliver an event
    ///
    /// Sends the delivery again now with a fresh retry schedule (the same `webhook-id`), and turns its
    /// endpoint back on if it was disabled.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id/deliveries/:delivery_id/redeliver",
        method = "post"
    )]
    async fn redeliver(
        &self,
        caller: Caller<Admin>,
        webhook_id: Path<String>,
        delivery_id: Path<String>,
    ) -> Result<Json<Delivery>, ApiError> {
        let row = self
            .app
            .redeliver(&caller.tenant, &webhook_id.0, &delivery_id.0)
            .await?;
        caller.audit("webhook.redeliver", &row.id);
        Ok(Json(Delivery::from(&row)))
    }
}

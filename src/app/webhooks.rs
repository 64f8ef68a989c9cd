//! Webhook endpoints per tenant: create (URL and address checked, secret generated or given and shown once),
//! list, read, delete, rotate the secret with a grace period, list deliveries, redeliver. The outbox and the
//! delivery worker are in [`crate::jobs::webhooks`].

use chrono::Utc;
use tracing::instrument;

pub use crate::jobs::webhooks::EVENTS;
pub use crate::store::{DeliveryRow, WebhookRow};

use super::App;
use crate::jobs::webhooks::{check_url, generate_secret, resolve_checked, secret_key};
use crate::store::StoreError;

/// Endpoints per tenant at most.
const MAX_WEBHOOKS: usize = 32;
/// Longest URL and description.
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;
/// Default and longest grace period of a rotated secret.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;
/// Deliveries listed at most.
pub const MAX_DELIVERIES: u32 = 1000;

/// What a client asks for.
pub struct WebhookSpec {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    /// A secret of the client's own (`whsec_` + base64 of 24-64 bytes); generated when absent.
    pub secret: Option<String>,
}

/// Why a webhook operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook with id {0}")]
    NotFound(String),
    #[error("no delivery with id {0} for this webhook")]
    DeliveryNotFound(String),
    #[error("{message}")]
    Invalid {
        message: String,
        param: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>, param: &'static str) -> WebhookError {
    WebhookError::Invalid {
        message: message.into(),
        param,
    }
}

impl App {
    /// Creates an endpoint; returns it with its secret (shown only now).
    #[instrument(skip_all, fields(tenant = %tenant))]
    pub async fn create_webhook(
        &self,
        tenant: &str,
        spec: WebhookSpec,
    ) -> Result<WebhookRow, WebhookError> {
        if spec.url.len() > MAX_URL {
            return Err(invalid(format!("url: at most {MAX_URL} characters"), "url"));
        }
        let mut events: Vec<String> = Vec::new();
        for e in &spec.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(invalid(
                    format!("events: {e:?} is not one of {}", EVENTS.join(", ")),
                    "events",
                ));
            }
            if !events.contains(e) {
                events.push(e.clone());
            }
        }
        if events.is_empty() {
            return Err(invalid(
                format!("events: name at least one of {}", EVENTS.join(", ")),
                "events",
            ));
        }
        let url = check_url(&spec.url).map_err(|e| invalid(format!("url: {e}"), "url"))?;
        resolve_checked(&url, self.webhooks.policy())
            .await
            .map_err(|e| invalid(format!("url: {e}"), "url"))?;
        if spec
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(invalid(
                format!("description: at most {MAX_DESCRIPTION} characters"),
                "description",
            ));
        }
        let secret = match spec.secret {
            Some(s) => {
                secret_key(&s).map_err(|e| invalid(format!("secret: {e}"), "secret"))?;
                s
            }
            None => generate_secret(),
        };
        if self.store.webhooks(tenant).await?.len() >= MAX_WEBHOOKS {
            return Err(invalid(
                format!("a tenant has at most {MAX_WEBHOOKS} webhooks; delete one first"),
                "url",
            ));
        }
        let now = Utc::now().timestamp_millis();
        let row = WebhookRow {
            id: format!("wh_{}", uuid::Uuid::new_v4().simple()),
            tenant: tenant.to_owned(),
            url: url.to_string(),
            events,
            description: spec.description,
            secret,
            old_secret: None,
            old_secret_until: None,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_webhook(&row).await?;
        Ok(row)
    }

    /// A tenant's endpoints, newest first.
    pub async fn webhooks(&self, tenant: &str) -> Result<Vec<WebhookRow>, WebhookError> {
        Ok(self.store.webhooks(tenant).await?)
    }

    /// One endpoint.
    pub async fn webhook(&self, tenant: &str, id: &str) -> Result<WebhookRow, WebhookError> {
        self.store
            .webhook(tenant, id)
            .await?
            .ok_or_else(|| WebhookError::NotFound(id.to_owned()))
    }

    /// Deletes an endpoint with its pending deliveries; returns what it was.
    #[instrument(skip(self))]
    pub async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<WebhookRow, WebhookError> {
        let row = self.webhook(tenant, id).await?;
        self.store.delete_webhook(tenant, id).await?;
        Ok(row)
    }

    /// Replaces the signing secret (generated or given); the old one keeps signing beside it for
    /// `grace_secs` (default a day), so receivers can switch without missing a delivery.
    #[instrument(skip(self, secret))]
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &str,
        id: &str,
        secret: Option<String>,
        grace_secs: Option<u64>,
    ) -> Result<WebhookRow, WebhookError> {
        self.webhook(tenant, id).await?;
        let grace = grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
        if grace > MAX_GRACE_SECS {
            return Err(invalid(
                format!("grace_seconds: at most {MAX_GRACE_SECS}"),
                "grace_seconds",
            ));
        }
        let secret = match secret {
            Some(s) => {
                secret_key(&s).map_err(|e| invalid(format!("secret: {e}"), "secret"))?;
                s
            }
            None => generate_secret(),
        };
        let until = Utc::now().timestamp_millis() + i64::try_from(grace * 1000).unwrap_or(i64::MAX);
        self.store
            .rotate_webhook_secret(tenant, id, &secret, until)
            .await?;
        self.webhook(tenant, id).await
    }

    /// An endpoint's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        tenant: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, WebhookError> {
        self.webhook(tenant, id).await?;
        Ok(self
            .store
            .deliveries(id, limit.clamp(1, MAX_DELIVERIES))
            .await?)
    }

    /// Sends a delivery again now, with a fresh retry schedule, and re-enables its endpoint.
    #[instrument(skip(self))]
    pub async fn redeliver(
        &self,
        tenant: &str,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryRow, WebhookError> {
        self.webhook(tenant, id).await?;
        if !self.store.redeliver(id, delivery_id).await? {
            return Err(WebhookError::DeliveryNotFound(delivery_id.to_owned()));
        }
        self.store.set_webhook_enabled(id, true, None).await?;
        self.webhooks.wake();
        self.store
            .deliveries(id, MAX_DELIVERIES)
            .await?
            .into_iter()
            .find(|d| d.id == delivery_id)
            .ok_or_else(|| WebhookError::DeliveryNotFound(delivery_id.to_owned()))
    }
}

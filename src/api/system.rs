//! System endpoints: liveness.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::app::App;

/// Liveness answer.
#[derive(Debug, Clone, Object)]
pub struct Health {
    /// `ok` when the process serves requests and its database answers, else `degraded`.
    pub status: String,
    /// docpipe's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
}

/// System endpoints.
pub struct SystemApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness
    ///
    /// Answers while the process serves requests.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Json<Health> {
        let db_ok = self.app.database_ok().await;
        Json(Health {
            status: if db_ok { "ok" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.app.uptime().as_secs(),
        })
    }
}

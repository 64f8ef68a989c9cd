//! The operator's endpoints: readiness with detail, per-route latency, and the Prometheus scrape.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Json, Response as ApiPayloadResponse};
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::error::ApiError;
use crate::app::App;
use crate::app::files::RETRY_AFTER_SECS;
use crate::app::status::Readiness;
use crate::telemetry::perf;

/// Host resources.
#[derive(Debug, Clone, Object)]
pub struct HostDto {
    /// Whole-machine CPU use, 0-100.
    pub cpu_percent: f32,
    /// Whole-machine memory use, 0-100.
    pub memory_percent: f32,
    /// Resident memory of the docpipe process in bytes.
    pub process_rss_bytes: u64,
    /// Free bytes on the data directory's file system.
    #[oai(nullable)]
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system in bytes.
    #[oai(nullable)]
    pub disk_total_bytes: Option<u64>,
}

/// Files waiting and being processed.
#[derive(Debug, Clone, Object)]
pub struct QueueDto {
    /// Files waiting for an extraction worker.
    pub queued: i64,
    /// Files being processed.
    pub processing: i64,
    /// Most files that may wait; uploads beyond it get 503.
    pub capacity: u64,
    /// Extraction workers.
    pub workers: usize,
}

/// Readiness and its detail.
#[derive(Debug, Clone, Object)]
pub struct ReadinessDto {
    /// `ready` or `not_ready`.
    pub status: String,
    /// What is wrong when not ready.
    pub problems: Vec<String>,
    /// docpipe's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Local models loaded and serving.
    pub models_loaded: Vec<String>,
    /// `ok` when the database answers, else `unavailable`.
    pub database: String,
    /// Chunks in the BM25 index.
    pub index_chunks: u64,
    /// Vectors in the vector index.
    pub index_vectors: u64,
    /// Files by status.
    pub files: std::collections::BTreeMap<String, i64>,
    /// The ingestion queue.
    pub queue: QueueDto,
    /// Host resources.
    pub host: HostDto,
}

impl ReadinessDto {
    fn new(r: Readiness, uptime_seconds: u64) -> ReadinessDto {
        let n = |s: &str| {
            r.files_by_status
                .iter()
                .find(|(k, _)| k == s)
                .map_or(0, |(_, n)| *n)
        };
        ReadinessDto {
            status: if r.ready { "ready" } else { "not_ready" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds,
            database: if r.database_ok { "ok" } else { "unavailable" }.into(),
            index_chunks: r.index_chunks,
            index_vectors: r.index_vectors,
            queue: QueueDto {
                queued: r.queue_depth,
                processing: n("processing"),
                capacity: r.queue_capacity,
                workers: r.workers,
            },
            files: r.files_by_status.iter().cloned().collect(),
            problems: r.problems,
            models_loaded: r.models_loaded,
            host: HostDto {
                cpu_percent: r.host.cpu_percent,
                memory_percent: r.host.memory_percent,
                process_rss_bytes: r.host.process_rss_bytes,
                disk_free_bytes: r.host.disk_free_bytes,
                disk_total_bytes: r.host.disk_total_bytes,
            },
        }
    }
}

/// Latency of one route.
#[derive(Debug, Clone, Object)]
pub struct RouteStatsDto {
    /// Method and route template, e.g. `POST /api/v1/search`.
    pub route: String,
    /// Requests in the window.
    pub count: u64,
    /// Requests per second over the window.
    pub requests_per_second: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Slowest (ms).
    pub max_ms: f64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
}

/// Performance over the last minutes.
#[derive(Debug, Clone, Object)]
pub struct PerformanceDto {
    /// Length of the window in seconds.
    pub window_seconds: u64,
    /// Per route, busiest first (up to the last 10,000 requests of each).
    pub routes: Vec<RouteStatsDto>,
    /// The ingestion queue now.
    pub queue: QueueDto,
}

/// Monitoring endpoints.
pub struct MonitoringApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::System")]
impl MonitoringApi {
    /// Readiness and detail
    ///
    /// Whether the service can do its work (models loaded, database answering, disk space, not shutting
    /// down), with queue depths, index sizes, CPU, memory and disk. When not ready the status is 503 and
    /// the body is this same object, with the reasons in `problems`.
    #[oai(path = "/api/v1/monitoring/health", method = "get")]
    async fn readiness(
        &self,
        _caller: Caller,
    ) -> Result<ApiPayloadResponse<Json<ReadinessDto>>, ApiError> {
        let r = self.app.readiness().await;
        let ready = r.ready;
        let dto = ReadinessDto::new(r, self.app.uptime().as_secs());
        let resp = ApiPayloadResponse::new(Json(dto));
        Ok(if ready {
            resp
        } else {
            resp.status(StatusCode::SERVICE_UNAVAILABLE)
                .header("Retry-After", RETRY_AFTER_SECS.to_string())
        })
    }

    /// Latency percentiles per route
    ///
    /// Per-route request counts, throughput and latency percentiles over the last five minutes, and the
    /// ingestion queue.
    #[oai(path = "/api/v1/performance/metrics", method = "get")]
    async fn performance(&self, _caller: Caller) -> Result<Json<PerformanceDto>, ApiError> {
        let queue = self.app.queue().await;
        Ok(Json(PerformanceDto {
            window_seconds: perf::WINDOW.as_secs(),
            routes: perf::report()
                .into_iter()
                .map(|s| RouteStatsDto {
                    route: s.route,
                    count: s.count as u64,
                    requests_per_second: s.requests_per_second,
                    p50_ms: s.p50_ms,
                    p90_ms: s.p90_ms,
                    p99_ms: s.p99_ms,
                    max_ms: s.max_ms,
                    server_errors: s.server_errors as u64,
                })
                .collect(),
            queue: QueueDto {
                queued: queue.queued,
                processing: queue.processing,
                capacity: queue.capacity,
                workers: queue.workers,
            },
        }))
    }
}

/// `GET /metrics`: Prometheus text format (admin scope when keys are configured; checked by the guard).
pub async fn prometheus(app: App) -> Response {
    let text = app.metrics_text().await;
    text.with_content_type(crate::telemetry::metrics::CONTENT_TYPE)
        .with_status(StatusCode::OK)
        .into_response()
}

//! Authentication, rate limiting and request accounting, applied to every request inside the edge
//! middleware (so refusals carry the request id and the one error shape):
//!
//! 1. the key (`X-API-Key` or `Authorization: Bearer`) is checked against the [`KeyRing`] (in memory);
//!    with an admin key configured, every route but [`is_public`] ones needs a valid key (401);
//! 2. the caller (key id, or client IP without a key) is rate limited (GCRA, `governor`): every answer
//!    carries `X-RateLimit-*`, a refused one is 429 with `Retry-After`;
//! 3. the [`Principal`] goes into the request for the [`Caller`] extractor, which checks the handler's scope
//!    (403) and gives the handler its tenant;
//! 4. the answer is counted in the Prometheus metrics and the latency window, by route template.
//!
//! Nothing here blocks: key checks are a hash and a map lookup, the limiter is lock-free.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use poem::error::ResponseError;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, PathPattern, Request, RequestBody, Response};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use tracing::Instrument;

use super::error::{ErrorBody, ErrorCode, REQUEST_ID};
use crate::auth::{AuthError, KeyRing, Principal, Scope};
use crate::telemetry::{metrics, perf};

/// Routes anyone may call, with or without a key.
pub fn is_public(path: &str) -> bool {
    path == "/health"
        || path == "/openapi.json"
        || path == "/docs"
        || path.starts_with("/docs/")
        || path == "/redoc"
        || path.starts_with("/redoc/")
}

/// Routes the rate limiter leaves alone (liveness probes).
fn is_unlimited(path: &str) -> bool {
    path == "/health"
}

/// How often (in requests) the limiter forgets callers whose bucket is full again.
const LIMITER_SWEEP_EVERY: u64 = 4096;

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The per-request guard.
pub struct Guard {
    keys: KeyRing,
    limiter: Option<Limiter>,
    clock: DefaultClock,
    limit: u32,
    /// Time for one request's worth of quota to come back.
    period: Duration,
    body_timeout: Duration,
    seen: AtomicU64,
    /// Router patterns (`/api/v1/files/:param0`) to the documented paths (`/api/v1/files/{file_id}`).
    route_names: HashMap<String, String>,
}

/// Maps each router pattern of the OpenAPI document's paths to the documented path: poem-openapi routes
/// `/a/{x}/b/{y}` as `/a/:param0/b/:param1`.
pub fn route_names(spec_paths: impl IntoIterator<Item = String>) -> HashMap<String, String> {
    spec_paths
        .into_iter()
        .map(|path| {
            let mut n = 0;
            let pattern = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') && seg.ends_with('}') {
                        n += 1;
                        format!(":param{}", n - 1)
                    } else {
                        seg.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            (pattern, path)
        })
        .collect()
}

impl Guard {
    /// A guard allowing `requests` per `window` per caller (0: unlimited).
    pub fn new(
        keys: KeyRing,
        requests: u32,
        window: Duration,
        body_timeout: Duration,
        route_names: HashMap<String, String>,
    ) -> Guard {
        let clock = DefaultClock::default();
        let (limiter, period) = match NonZeroU32::new(requests) {
            Some(n) => {
                let period = (window / n.get()).max(Duration::from_nanos(1));
                let quota = Quota::with_period(period)
                    .expect("the period is positive. This is a bug.")
                    .allow_burst(n);
                (
                    Some(RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()),
                    period,
                )
            }
            None => (None, window),
        };
        Guard {
            keys,
            limiter,
            clock,
            limit: requests,
            period,
            body_timeout,
            seen: AtomicU64::new(0),
            route_names,
        }
    }

    /// Wraps one request.
    pub async fn handle<E: Endpoint>(
        self: Arc<Self>,
        next: Arc<E>,
        mut req: Request,
    ) -> poem::Result<Response> {
        let started = Instant::now();
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %path);
        let public = is_public(&path);
        let auth = self.authenticate(&req, public, &path);
        let limit_key = match &auth {
            Ok(Some(p)) if p.key_id.is_some() => {
                format!("key:{}", p.key_id.as_deref().unwrap_or_default())
            }
            _ => format!(
                "ip:{}",
                client_ip(&req).map_or_else(String::new, |ip| ip.to_string())
            ),
        };
        let rate = if is_unlimited(&path) {
            None
        } else {
            self.check_rate(&limit_key)
        };
        let mut resp = match (&rate, auth) {
            (Some(Err(retry_after)), _) => {
                metrics::rate_limited();
                tracing::info!(parent: &span, caller = %limit_key, "rate limited");
                rate_limited_response(*retry_after)
            }
            (_, Err(e)) => {
                metrics::auth_failure(auth_reason(e));
                tracing::info!(parent: &span, reason = auth_reason(e), "request refused");
                e.as_response()
            }
            (_, Ok(principal)) => {
                if let Some(p) = principal {
                    req.extensions_mut().insert(p);
                }
                self.limit_body_time(&mut req);
                match next.call(req).instrument(span.clone()).await {
                    Ok(r) => r.into_response(),
                    Err(e) => e.into_response(),
                }
            }
        };
        if let Some(r) = rate {
            self.rate_headers(&mut resp, r);
        }
        let route = resp.data::<PathPattern>().map_or("unmatched", |p| &*p.0);
        let route = self
            .route_names
            .get(route)
            .map_or(route, String::as_str)
            .to_owned();
        let status = resp.status().as_u16();
        let seconds = started.elapsed().as_secs_f64();
        metrics::http_request(&route, &method, status, seconds);
        perf::record(
            &format!("{} {route}", metrics::method_label(&method)),
            seconds,
            status,
        );
        Ok(resp)
    }

    /// The principal of the request: `Ok(None)` for an anonymous call of a public route.
    fn authenticate(
        &self,
        req: &Request,
        public: bool,
        path: &str,
    ) -> Result<Option<Principal>, AuthError> {
        let presented = presented_key(req);
        let principal = match presented {
            Some(key) => match self.keys.authenticate(key) {
                Ok(p) => Some(p),
                // A bad key on a public route is ignored: liveness and docs never fail on credentials.
                Err(_) if public => None,
                // An open server takes any unknown key as anonymous: OpenAI clients always send one.
                Err(AuthError::Invalid) if !self.keys.enabled() => Some(Principal::open()),
                Err(e) => return Err(e),
            },
            None if !self.keys.enabled() => Some(Principal::open()),
            None if public => None,
            None => return Err(AuthError::Missing),
        };
        // Server-wide views count every tenant's files and requests: only the server's own admin key
        // (or an open server) sees them, never a tenant's key, whatever its scope.
        if SERVER_WIDE_PATHS.contains(&path)
            && self.keys.enabled()
            && !principal.as_ref().is_some_and(|p| p.root)
        {
            return Err(
                if principal.as_ref().is_some_and(|p| p.allows(Scope::Admin)) {
                    AuthError::ServerWide
                } else {
                    AuthError::Forbidden(Scope::Admin)
                },
            );
        }
        Ok(principal)
    }

    /// `None` without a limit; else the remaining quota, or the wait before the next allowed request.
    fn check_rate(&self, key: &str) -> Option<Result<u32, Duration>> {
        let limiter = self.limiter.as_ref()?;
        if self
            .seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(LIMITER_SWEEP_EVERY)
        {
            limiter.retain_recent();
        }
        Some(match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => Ok(snapshot.remaining_burst_capacity()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        })
    }

    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the full quota is back).
    fn rate_headers(&self, resp: &mut Response, rate: Result<u32, Duration>) {
        let remaining = rate.unwrap_or(0);
        let used = self.limit.saturating_sub(remaining);
        let reset = match rate {
            Ok(_) => self.period * used,
            Err(wait) => wait + self.period * self.limit.saturating_sub(1),
        };
        let headers = resp.headers_mut();
        for (name, value) in [
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", ceil_secs(reset).to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }

    /// Replaces the body with one that fails once `body_timeout` has passed since the request arrived.
    fn limit_body_time(&self, req: &mut Request) {
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let body = Box::pin(req.take_body().into_bytes_stream());
        let stream = futures::stream::unfold(Some(body), move |state| async move {
            let mut body = state?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(item)) => Some((item, Some(body))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body took too long to arrive",
                    )),
                    None,
                )),
            }
        });
        req.set_body(Body::from_bytes_stream(stream));
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// The key from `X-API-Key` or `Authorization: Bearer`.
fn presented_key(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Routes whose answers cover every tenant (checked by the guard, before the handler).
const SERVER_WIDE_PATHS: [&str; 3] = [
    "/metrics",
    "/api/v1/monitoring/health",
    "/api/v1/performance/metrics",
];

fn client_ip(req: &Request) -> Option<IpAddr> {
    req.remote_addr()
        .as_socket_addr()
        .map(std::net::SocketAddr::ip)
}

fn auth_reason(e: AuthError) -> &'static str {
    match e {
        AuthError::Missing => "missing",
        AuthError::Invalid => "invalid",
        AuthError::Expired => "expired",
        AuthError::Revoked => "revoked",
        AuthError::Forbidden(_) | AuthError::ServerWide => "forbidden",
    }
}

/// The error code of an authentication failure.
pub fn auth_code(e: AuthError) -> ErrorCode {
    match e {
        AuthError::Missing => ErrorCode::MissingApiKey,
        AuthError::Invalid => ErrorCode::InvalidApiKey,
        AuthError::Expired => ErrorCode::ExpiredApiKey,
        AuthError::Revoked => ErrorCode::RevokedApiKey,
        AuthError::Forbidden(_) | AuthError::ServerWide => ErrorCode::InsufficientScope,
    }
}

fn error_response(code: ErrorCode, message: String) -> Response {
    let spec = code.spec();
    Response::builder()
        .status(StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(serde_json::to_string(&ErrorBody::new(code, message, None)).unwrap_or_default())
}

fn rate_limited_response(retry_after: Duration) -> Response {
    let secs = ceil_secs(retry_after);
    let mut resp = error_response(
        ErrorCode::RateLimited,
        format!(
            "rate limit exceeded; retry after {secs} s (RATE_LIMIT_REQUESTS per RATE_LIMIT_WINDOW)"
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

impl ResponseError for AuthError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(auth_code(*self).spec().status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn as_response(&self) -> Response {
        let mut resp = error_response(auth_code(*self), self.to_string());
        if self.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A scope a handler requires, as a type: `Caller` (read), `Caller<Write>`, `Caller<Admin>`.
pub trait ScopeMarker: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Marker: list, read, search, chat, embed.
pub struct Read;
/// Marker: upload and delete.
pub struct Write;
/// Marker: manage keys.
pub struct Admin;

impl ScopeMarker for Read {
    const SCOPE: Scope = Scope::Read;
}
impl ScopeMarker for Write {
    const SCOPE: Scope = Scope::Write;
}
impl ScopeMarker for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// Who a request acts for, with the scope `S` checked (403 otherwise). Every operation that touches
/// tenant data takes one and uses `caller.tenant`; nothing else supplies a tenant.
pub struct Caller<S: ScopeMarker = Read> {
    /// The tenant the request acts for.
    pub tenant: String,
    /// The key used (`None` on a server without keys).
    pub key_id: Option<String>,
    /// The request id.
    pub request_id: String,
    /// The authenticated principal.
    pub principal: Principal,
    _scope: PhantomData<S>,
}

impl<S: ScopeMarker> Caller<S> {
    /// Writes an audit log entry for a mutation: action, target, tenant, key id and request id.
    pub fn audit(&self, action: &str, target: &str) {
        tracing::info!(
            target: "audit",
            action,
            target_id = target,
            tenant = %self.tenant,
            key_id = self.key_id.as_deref().unwrap_or("none"),
            request_id = %self.request_id,
            "audit"
        );
    }
}

/// Name of the `X-API-Key` security scheme in the OpenAPI document.
const SCHEME_API_KEY: &str = "ApiKey";
/// Name of the `Authorization: Bearer` security scheme.
const SCHEME_BEARER: &str = "Bearer";

/// An OpenAPI security scheme, so the document (and Swagger UI's "Authorize") shows how to send a key.
impl<'a, S: ScopeMarker> ApiExtractor<'a> for Caller<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        let blank = || MetaSecurityScheme {
            ty: "",
            description: None,
            name: None,
            key_in: None,
            scheme: None,
            bearer_format: None,
            flows: None,
            openid_connect_url: None,
        };
        registry.create_security_scheme(
            SCHEME_API_KEY,
            MetaSecurityScheme {
                ty: "apiKey",
                description: Some(
                    "An API key in the `X-API-Key` header. Required when the server has an admin key \
                     configured; a server without one runs open.",
                ),
                name: Some("X-API-Key"),
                key_in: Some("header"),
                ..blank()
            },
        );
        registry.create_security_scheme(
            SCHEME_BEARER,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "The same API key as a bearer token (`Authorization: Bearer <key>`).",
                ),
                scheme: Some("bearer"),
                ..blank()
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME_API_KEY, SCHEME_BEARER]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let Some(p) = req.extensions().get::<Principal>() else {
            return Err(AuthError::Missing.into());
        };
        if !p.allows(S::SCOPE) {
            metrics::auth_failure("forbidden");
            return Err(AuthError::Forbidden(S::SCOPE).into());
        }
        Ok(Caller {
            tenant: p.tenant.clone(),
            key_id: p.key_id.clone(),
            request_id: REQUEST_ID.try_with(Clone::clone).unwrap_or_default(),
            principal: p.clone(),
            _scope: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_routes() {
        for p in ["/health", "/docs", "/docs/", "/redoc/x", "/openapi.json"] {
            assert!(is_public(p), "{p}");
        }
        for p in [
            "/metrics",
            "/api/v1/files",
            "/v1/models",
            "/docsx",
            "/healthz",
        ] {
            assert!(!is_public(p), "{p}");
        }
    }

    #[test]
    fn router_patterns_map_to_documented_paths() {
        let names = route_names(["/a/{x}/b/{y}".to_owned(), "/health".to_owned()]);
        assert_eq!(names["/a/:param0/b/:param1"], "/a/{x}/b/{y}");
        assert_eq!(names["/health"], "/health");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(600)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
    }
}

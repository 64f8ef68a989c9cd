//! The edge of every request: assigns the request id (taken from `X-Request-Id` when the client sends a
//! sane one), enforces per-route body limits while the body streams in (413 without buffering the body,
//! then a bounded lingering read of the rest so the client can read the 413), and turns every error,
//! including poem's own 404/405 and parse errors, into the one JSON error shape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use super::error::{ErrorBody, ErrorCode, REQUEST_ID};

/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Multipart framing allowed on top of the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Largest JSON (or other non-upload) body.
pub const JSON_BODY_LIMIT: u64 = 1024 * 1024;
/// Longest client-supplied request id kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// What a route's body is, which sets its limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// JSON or another small body: [`JSON_BODY_LIMIT`].
    Small,
    /// One file: `max_file_size`.
    Upload,
    /// A document batch (many files): `max_batch_size`.
    Batch,
}

fn body_kind(method: &Method, path: &str) -> BodyKind {
    match path {
        "/api/v1/upload" | "/v1/files" if method == Method::POST => BodyKind::Upload,
        "/api/v1/batches" if method == Method::POST => BodyKind::Batch,
        _ => BodyKind::Small,
    }
}

/// Settings of the edge middleware.
#[derive(Clone)]
pub struct Edge {
    /// Largest upload in bytes.
    pub max_file_size: u64,
    /// Largest document batch request in bytes.
    pub max_batch_size: u64,
    /// How long the rest of a refused (oversized) body is read and discarded after the 413.
    pub linger: Duration,
    /// How many bytes beyond its limit a refused body may have and still be read to its end; a larger one
    /// is cut off at once.
    pub linger_bytes: u64,
    /// The methods of each known path, for the `Allow` header of a 405.
    pub allow: Arc<super::spec::AllowTable>,
}

impl Edge {
    /// Wraps one request.
    pub async fn handle<E: Endpoint>(
        self,
        next: Arc<E>,
        mut req: Request,
    ) -> poem::Result<Response> {
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID_LEN
                    && v.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let kind = body_kind(req.method(), req.uri().path());
        let max_file_size = self.max_file_size;
        let max_batch_size = self.max_batch_size;
        let limit = match kind {
            BodyKind::Upload => self.max_file_size + MULTIPART_OVERHEAD,
            BodyKind::Batch => self.max_batch_size + MULTIPART_OVERHEAD,
            BodyKind::Small => JSON_BODY_LIMIT,
        };
        let too_large = move || {
            // Even when the rest of the body is read (below), the connection is not reused.
            let with_close = |mut r: Response| {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            };
            with_close(match kind {
                BodyKind::Upload => json_error(
                    ErrorCode::FileTooLarge,
                    format!(
                        "the upload is larger than the limit of {max_file_size} bytes (MAX_FILE_SIZE)"
                    ),
                ),
                BodyKind::Batch => json_error(
                    ErrorCode::BodyTooLarge,
                    format!(
                        "the document batch is larger than the limit of {max_batch_size} bytes (DOCPIPE_MAX_BATCH_SIZE); send it in several requests"
                    ),
                ),
                BodyKind::Small => json_error(
                    ErrorCode::BodyTooLarge,
                    format!("the request body is larger than the limit of {limit} bytes"),
                ),
            })
        };
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let id = request_id.clone();
        let linger_budget = limit.saturating_add(self.linger_bytes);
        let allow = Arc::clone(&self.allow);
        let response = REQUEST_ID
            .scope(request_id.clone(), async move {
                let declared = req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let Some(n) = declared.filter(|n| *n > limit) {
                    // A client waiting for `100 Continue` has not sent the body and never will.
                    let waits = req
                        .headers()
                        .get(header::EXPECT)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                    if !waits && n <= linger_budget {
                        let rest = req.take_body().into_bytes_stream().boxed();
                        self.linger_on(rest, linger_budget);
                    }
                    return too_large();
                }
                let body = SharedBody::take(&mut req);
                let seen = Arc::new(AtomicU64::new(0));
                limit_body(&mut req, &body, limit, Arc::clone(&seen));
                let resp = match next.call(req).await {
                    Ok(r) => r.into_response(),
                    Err(e) => e.into_response(),
                };
                let seen = seen.load(Ordering::Relaxed);
                if seen > limit {
                    if let Some(rest) = body.into_rest() {
                        self.linger_on(rest, linger_budget.saturating_sub(seen));
                    }
                    return too_large();
                }
                normalize_error(resp).await
            })
            .await;
        let mut response = response;
        // RFC 9110: a 405 lists the methods the path does take.
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(v) = allow
                .allow(&path)
                .and_then(|a| HeaderValue::from_str(a).ok())
        {
            response.headers_mut().insert(header::ALLOW, v);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        tracing::debug!(%method, %path, status = response.status().as_u16(), request_id = %id, "request");
        Ok(response)
    }

    /// Reads and discards the rest of a refused body in the background while the 413 goes out, for at most
    /// `linger` and `budget` bytes, then lets the connection close. A client that writes its whole body
    /// before it reads (Python's urllib and requests do) then reads the 413 instead of losing it to a
    /// connection reset.
    fn linger_on(self, mut rest: RawBody, budget: u64) {
        if self.linger.is_zero() {
            return;
        }
        tokio::spawn(async move {
            let drain = async {
                let mut read: u64 = 0;
                while let Some(Ok(chunk)) = rest.next().await {
                    read += chunk.len() as u64;
                    if read > budget {
                        break;
                    }
                }
            };
            // Dropping the body unfinished makes the server close the connection.
            let _ = tokio::time::timeout(self.linger, drain).await;
        });
    }
}

/// A request body as it arrives.
type RawBody = BoxStream<'static, std::io::Result<Bytes>>;

/// The request body, shared between the handler (which reads it through a proxy) and the edge, which
/// keeps what the handler did not read when the body turns out to be too large.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Option<RawBody>>>);

impl SharedBody {
    fn take(req: &mut Request) -> SharedBody {
        SharedBody(Arc::new(Mutex::new(Some(
            req.take_body().into_bytes_stream().boxed(),
        ))))
    }

    /// The body as a stream for the handler; it ends when the edge has taken the rest.
    fn proxy(&self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let shared = self.clone();
        futures::stream::poll_fn(move |cx| {
            // Held only for one poll, never across an await.
            let mut body = shared.0.lock().unwrap_or_else(PoisonError::into_inner);
            match body.as_mut() {
                Some(stream) => stream.poll_next_unpin(cx),
                None => Poll::Ready(None),
            }
        })
    }

    /// What the handler left of the body.
    fn into_rest(self) -> Option<RawBody> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Gives the handler a body that fails once more than `limit` bytes arrive; `seen` counts them.
fn limit_body(req: &mut Request, body: &SharedBody, limit: u64, seen: Arc<AtomicU64>) {
    let stream = body.proxy().map(move |chunk| {
        let chunk = chunk?;
        let total = seen.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if total > limit {
            return Err(std::io::Error::other("request body exceeds the limit"));
        }
        Ok(chunk)
    });
    req.set_body(Body::from_bytes_stream(stream));
}

/// A response in the error shape.
pub fn json_error(code: ErrorCode, message: String) -> Response {
    json_response(code, message, None)
}

/// The parameter or multipart field a poem-openapi parse error names ("failed to parse parameter
/// `limit`: ...", "parse multipart error: field `purpose` is required").
fn param_of(message: &str) -> Option<String> {
    ["parameter `", "field `"].iter().find_map(|marker| {
        let (_, rest) = message.split_once(marker)?;
        rest.split_once('`').map(|(name, _)| name.to_owned())
    })
}

/// A response in the error shape, blaming `param` when one is at fault.
fn json_response(code: ErrorCode, message: String, param: Option<&str>) -> Response {
    let spec = code.spec();
    let body = ErrorBody::new(code, message, param);
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json")
        .body(serde_json::to_string(&body).unwrap_or_default());
    if spec.status == StatusCode::SERVICE_UNAVAILABLE.as_u16()
        && let Ok(v) = HeaderValue::from_str(&crate::app::files::RETRY_AFTER_SECS.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Error responses that are not already JSON (poem's own 404, 405, parse errors) get the error shape.
async fn normalize_error(mut resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = resp.take_body().into_string().await.unwrap_or_default();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::RouteNotFound, "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BodyTooLarge, text),
        s if s.is_server_error() => (ErrorCode::Internal, "an internal error occurred".to_owned()),
        _ => (
            ErrorCode::InvalidRequest,
            if text.is_empty() {
                status.to_string()
            } else {
                text
            },
        ),
    };
    let param = param_of(&message);
    let mut out = json_response(code, message, param.as_deref());
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::param_of;

    #[test]
    fn parse_errors_name_their_parameter() {
        assert_eq!(
            param_of("failed to parse parameter `limit`: verification failed").as_deref(),
            Some("limit")
        );
        assert_eq!(
            param_of("parse multipart error: field `purpose` is required").as_deref(),
            Some("purpose")
        );
        assert_eq!(param_of("no such route"), None);
    }
}

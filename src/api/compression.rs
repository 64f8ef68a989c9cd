//! Response compression: zstd, brotli or gzip, as the client's `Accept-Encoding` allows, for text-like
//! responses (JSON, HTML, JavaScript, CSS, plain text, XML) of at least [`MIN_BYTES`]. Never for
//! server-sent events (a compressor holds events back until its block fills), responses that already
//! have a `Content-Encoding`, or other types: a file's original bytes from `/content` are sent as stored
//! when their type is an image, PDF, archive or other binary format (mostly compressed already).
//! The encoders are poem's ([`poem::web::Compress`]); this module only decides when to use them.

use std::sync::Arc;

use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::web::{Compress, CompressionAlgo, CompressionLevel};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

/// Smallest response body compressed: below it the framing costs more than it saves.
pub const MIN_BYTES: u64 = 1024;

/// Brotli's quality (0-11): 4 compresses better than gzip's default at about its speed.
const BROTLI_QUALITY: i32 = 4;

/// The codings offered, most preferred first (when the client weighs them alike).
const CODINGS: [(&str, CompressionAlgo); 3] = [
    ("zstd", CompressionAlgo::ZSTD),
    ("br", CompressionAlgo::BR),
    ("gzip", CompressionAlgo::GZIP),
];

/// Wraps one request: negotiates a coding from `Accept-Encoding`, and compresses the response when it is
/// worth it (see the module note).
pub async fn handle<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let algo = negotiate(req.headers());
    let mut resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    if !compressible(resp.status(), resp.headers()) {
        return Ok(resp);
    }
    let body: http_body_util::combinators::BoxBody<_, _> = resp.take_body().into();
    let size = http_body::Body::size_hint(&body).exact();
    resp.set_body(Body::from(body));
    if size.is_some_and(|n| n < MIN_BYTES) {
        return Ok(resp);
    }
    // Whether this answer is compressed depends on the request's Accept-Encoding: caches must know.
    resp.headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(match algo {
        // poem's brotli default is its fastest quality, which compresses worse than gzip.
        Some(CompressionAlgo::BR) => Compress::new(resp, CompressionAlgo::BR)
            .with_quality(CompressionLevel::Precise(BROTLI_QUALITY))
            .into_response(),
        Some(algo) => Compress::new(resp, algo).into_response(),
        None => resp,
    })
}

/// The coding to answer with: the acceptable one (q > 0) the client weighs most, ties going to
/// [`CODINGS`]' order; `*` stands for the codings not named; none when nothing offered is acceptable.
fn negotiate(headers: &HeaderMap) -> Option<CompressionAlgo> {
    let mut named: Vec<(String, f32)> = Vec::new();
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        if coding.is_empty() {
            continue;
        }
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .next()
            .unwrap_or(1.0);
        named.push((coding, q));
    }
    let weight = |coding: &str| {
        let find = |c: &str| named.iter().find(|(n, _)| n == c).map(|(_, q)| *q);
        find(coding).or_else(|| find("*")).unwrap_or(0.0)
    };
    let mut best: Option<(f32, CompressionAlgo)> = None;
    for (name, algo) in CODINGS {
        let q = weight(name);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, algo));
        }
    }
    best.map(|(_, algo)| algo)
}

/// True for a response that may be compressed: a success or error with a body, no coding yet, and a
/// text-like type other than server-sent events.
fn compressible(status: StatusCode, headers: &HeaderMap) -> bool {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || headers.contains_key(header::CONTENT_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    else {
        return false;
    };
    if essence == "text/event-stream" {
        return false;
    }
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-ndjson"
                | "application/yaml"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<CompressionAlgo> {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(v).expect("header"),
        );
        negotiate(&h)
    }

    fn typed(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("header"),
        );
        h
    }

    #[test]
    fn the_client_s_weights_pick_the_coding() {
        assert_eq!(negotiate(&HeaderMap::new()), None);
        assert_eq!(accept("gzip"), Some(CompressionAlgo::GZIP));
        assert_eq!(accept("GZip"), Some(CompressionAlgo::GZIP));
        assert_eq!(
            accept("gzip, deflate, br, zstd"),
            Some(CompressionAlgo::ZSTD)
        );
        assert_eq!(accept("gzip, br"), Some(CompressionAlgo::BR));
        assert_eq!(accept("br;q=0.5, gzip"), Some(CompressionAlgo::GZIP));
        assert_eq!(accept("gzip;q=0, br;q=0"), None);
        assert_eq!(accept("deflate, identity"), None);
        assert_eq!(accept("*"), Some(CompressionAlgo::ZSTD));
        assert_eq!(accept("*;q=0.1, gzip;q=0.2"), Some(CompressionAlgo::GZIP));
        assert_eq!(accept("zstd;q=0, *"), Some(CompressionAlgo::BR));
        assert_eq!(
            accept("gzip; q=0.8 , br ; Q=0.9"),
            Some(CompressionAlgo::BR)
        );
    }

    #[test]
    fn only_text_like_bodies_without_a_coding_are_compressed() {
        let ok = StatusCode::OK;
        assert!(compressible(ok, &typed("application/json; charset=utf-8")));
        assert!(compressible(ok, &typed("text/html")));
        assert!(compressible(ok, &typed("text/plain")));
        assert!(compressible(ok, &typed("application/problem+json")));
        assert!(compressible(
            StatusCode::NOT_FOUND,
            &typed("application/json")
        ));
        assert!(!compressible(ok, &typed("text/event-stream")));
        assert!(!compressible(
            ok,
            &typed("Text/Event-Stream; charset=utf-8")
        ));
        assert!(!compressible(ok, &typed("application/pdf")));
        assert!(!compressible(ok, &typed("image/png")));
        assert!(!compressible(ok, &typed("application/zip")));
        assert!(!compressible(ok, &HeaderMap::new()));
        assert!(!compressible(
            StatusCode::NO_CONTENT,
            &typed("application/json")
        ));
        let mut coded = typed("application/json");
        coded.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!compressible(ok, &coded));
    }
}

//! Webhook deliveries (the Standard Webhooks specification): signing, the address policy that keeps them
//! from reaching private networks (SSRF), the retry schedule, and the worker that sends what the outbox
//! holds. The outbox itself is written by database triggers in the transaction of each state change, so
//! nothing is lost on a crash; a delivery in flight then is simply due again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use ipnet::IpNet;
use rand::Rng as _;
use sha2::Sha256;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pipeline::FileEvent;
use crate::store::{Attempt, DeliveryRow, Store, StoreError, WebhookRow};

/// The event types an endpoint may subscribe to.
pub const EVENTS: [&str; 8] = [
    "file.ready",
    "file.failed",
    "file.deleted",
    "document_batch.completed",
    "batch.completed",
    "batch.failed",
    "batch.cancelled",
    "batch.expired",
];
/// Prefix of a signing secret; the rest is the base64 of the key bytes.
const SECRET_PREFIX: &str = "whsec_";
/// Key bytes of a generated secret.
const SECRET_BYTES: usize = 32;
/// The default retry schedule after the first attempt (the one the specification suggests, about a day).
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";
/// Connect timeout and whole-attempt timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of a receiver's answer read (and kept in the attempt's error) at most.
const MAX_RESPONSE_BYTES: usize = 4096;
/// Deliveries sent at once, and taken from the outbox per round.
const CONCURRENCY: usize = 8;
const ROUND: u32 = 64;
/// How often the worker looks for due deliveries without being woken (retries, batch events).
const POLL: Duration = Duration::from_millis(500);
/// HTTP clients kept, one per endpoint host and checked address (each holds its TLS setup and open connections).
const MAX_CLIENTS: usize = 256;

/// A new signing secret.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut key[..]);
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

/// The key bytes of a `whsec_...` secret (24 to 64 bytes), or why it is not one.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("a secret starts with {SECRET_PREFIX:?}"))?;
    let key = BASE64
        .decode(b64)
        .map_err(|_| format!("after {SECRET_PREFIX:?} a secret is base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err("a secret holds 24 to 64 bytes (base64 after the prefix)".into());
    }
    Ok(key)
}

/// The `v1,<base64 HMAC-SHA256>` signature of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = secret_key(secret).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// Which addresses deliveries may go to: public ones always; private, loopback and other reserved ones only
/// when the operator allows them (`DOCPIPE_WEBHOOK_ALLOW_PRIVATE`: `1` for all, or a list of CIDRs).
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    all_private: bool,
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Parses `DOCPIPE_WEBHOOK_ALLOW_PRIVATE`: empty (none), `1`/`true` (all), or comma-separated CIDRs.
    pub fn parse(value: &str) -> Result<AddressPolicy, String> {
        let v = value.trim();
        if v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false") {
            return Ok(AddressPolicy::default());
        }
        if v == "1" || v.eq_ignore_ascii_case("true") {
            return Ok(AddressPolicy {
                all_private: true,
                allowed: Vec::new(),
            });
        }
        let allowed = v
            .split(',')
            .map(|c| {
                let c = c.trim();
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{c:?} is not an address or CIDR"))
            })
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy {
            all_private: false,
            allowed,
        })
    }

    /// True when a delivery may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.all_private || self.allowed.iter().any(|n| n.contains(&ip))
    }
}

/// True for a globally routable unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

/// Checks an endpoint URL's form: `http` or `https`, a host, no credentials.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the URL must be http or https".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not carry credentials".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL needs a host".into());
    }
    Ok(parsed)
}

/// Resolves the URL's host and checks every address against the policy; returns the address to connect
/// to (so the connection goes where the check looked: no DNS rebinding).
pub async fn resolve_checked(
    url: &reqwest::Url,
    policy: &AddressPolicy,
) -> Result<SocketAddr, String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    if let Some(bad) = addrs.iter().find(|a| !policy.allows(a.ip())) {
        return Err(format!(
            "{host} resolves to {}, a private, loopback or reserved address; deliveries go to public addresses \
             only unless DOCPIPE_WEBHOOK_ALLOW_PRIVATE allows it",
            bad.ip()
        ));
    }
    Ok(first)
}

/// Parses a retry schedule: comma-separated delays such as `5s,5m,30m,2h`.
pub fn parse_schedule(value: &str) -> Result<Vec<Duration>, String> {
    value
        .split(',')
        .map(|d| {
            let d = d.trim();
            let (n, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len()));
            let n: u64 = n
                .parse()
                .map_err(|_| format!("{d:?} is not a delay like 5s, 5m or 2h"))?;
            let secs = match unit {
                "ms" => return Ok(Duration::from_millis(n)),
                "s" | "" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => return Err(format!("{d:?}: the unit is ms, s, m or h")),
            };
            Ok(Duration::from_secs(secs))
        })
        .collect()
}

/// The delay before retry `index` (0 = after the first attempt) with ±10 % jitter; `None` when the
/// schedule is used up.
fn next_delay(schedule: &[Duration], index: usize) -> Option<Duration> {
    let base = *schedule.get(index)?;
    let jitter = rand::rng().random_range(0.9..1.1);
    Some(base.mul_f64(jitter))
}

/// The delivery worker's shared state.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    policy: AddressPolicy,
    schedule: Vec<Duration>,
    /// Certificate authorities trusted for https endpoints besides the system's.
    roots: Vec<reqwest::Certificate>,
    /// A client per (host, checked address): building one loads the TLS trust store (tens of milliseconds),
    /// and a kept client reuses its connections.
    clients: Mutex<HashMap<(String, SocketAddr), reqwest::Client>>,
    wake: Notify,
}

/// An error with its causes (reqwest's own message leaves out why a connection failed, e.g. the certificate).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Reads a PEM bundle of certificate authorities (`DOCPIPE_WEBHOOK_CA_FILE`).
pub fn read_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(roots)
}

impl Webhooks {
    pub fn new(
        store: Store,
        policy: AddressPolicy,
        schedule: Vec<Duration>,
        roots: Vec<reqwest::Certificate>,
    ) -> Webhooks {
        Webhooks {
            inner: Arc::new(Inner {
                store,
                policy,
                schedule,
                roots,
                clients: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        }
    }

    /// The address policy endpoints are checked against.
    pub fn policy(&self) -> &AddressPolicy {
        &self.inner.policy
    }

    /// Tells the worker a delivery may be due now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Starts the worker: it wakes on file events, on [`wake`](Self::wake) and every half second.
    pub fn spawn(
        &self,
        mut events: broadcast::Receiver<FileEvent>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let sent = match this.inner.store.due_deliveries(ROUND).await {
                    Ok(due) => {
                        let n = due.len();
                        futures::stream::iter(due)
                            .for_each_concurrent(CONCURRENCY, |(d, w)| this.deliver(d, w))
                            .await;
                        n
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the webhook outbox");
                        0
                    }
                };
                if sent == 0 {
                    tokio::select! {
                        () = this.inner.wake.notified() => {}
                        _ = events.recv() => {}
                        () = tokio::time::sleep(POLL) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        })
    }

    /// One attempt of one delivery, recorded with its outcome.
    async fn deliver(&self, d: DeliveryRow, w: WebhookRow) {
        let started = Instant::now();
        let outcome = self.send(&d, &w).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status_code, error) = match &outcome {
            Ok(code) => (Some(*code), None),
            Err((code, e)) => (*code, Some(e.clone())),
        };
        let delivered = outcome.is_ok();
        let index = d.attempts.saturating_sub(d.schedule_start) as usize;
        let next = if delivered {
            None
        } else {
            next_delay(&self.inner.schedule, index).map(|delay| {
                chrono::Utc::now().timestamp_millis()
                    + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
            })
        };
        let attempt = Attempt {
            status_code,
            error: error.as_deref(),
            latency_ms,
        };
        if let Err(e) = self.record(&d, &w, &attempt, delivered, next).await {
            tracing::error!(delivery_id = %d.id, error = %e, "cannot record a webhook attempt");
        }
    }

    async fn record(
        &self,
        d: &DeliveryRow,
        w: &WebhookRow,
        attempt: &Attempt<'_>,
        delivered: bool,
        next: Option<i64>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        store
            .record_attempt(&d.id, attempt, delivered, next)
            .await?;
        tracing::info!(delivery_id = %d.id, webhook_id = %w.id, event = %d.event_type, delivered,
            status_code = attempt.status_code, latency_ms = attempt.latency_ms, error = attempt.error, "webhook attempt");
        if !delivered && next.is_none() {
            let reason = format!(
                "disabled after delivery {} failed {} attempts; last: {}",
                d.id,
                d.attempts + 1 - d.schedule_start,
                attempt
                    .error
                    .map_or_else(|| "no answer".to_owned(), str::to_owned)
            );
            store
                .set_webhook_enabled(&w.id, false, Some(&reason))
                .await?;
            tracing::warn!(webhook_id = %w.id, %reason, "webhook endpoint disabled");
        }
        Ok(())
    }

    /// The client that connects `host` to the checked `addr` only (redirects off, timeouts set).
    fn client_for(&self, host: String, addr: SocketAddr) -> Result<reqwest::Client, String> {
        // Held without an await; building a client takes milliseconds and happens once per endpoint.
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&(host.clone(), addr)) {
            return Ok(c.clone());
        }
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(ATTEMPT_TIMEOUT)
            .resolve(&host, addr)
            .tls_certs_merge(self.inner.roots.iter().cloned())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        clients.insert((host, addr), client.clone());
        Ok(client)
    }

    /// Sends the delivery: the status code of a 2xx answer, or the code (if any) and why it failed.
    async fn send(&self, d: &DeliveryRow, w: &WebhookRow) -> Result<u16, (Option<u16>, String)> {
        let url = check_url(&w.url).map_err(|e| (None, e))?;
        let addr = resolve_checked(&url, &self.inner.policy)
            .await
            .map_err(|e| (None, e))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = self.client_for(host, addr).map_err(|e| (None, e))?;
        let timestamp = chrono::Utc::now().timestamp();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut signatures: Vec<String> = sign(&w.secret, &d.id, timestamp, &d.payload)
            .into_iter()
            .collect();
        if let (Some(old), Some(until)) = (&w.old_secret, w.old_secret_until)
            && until > now_ms
        {
            signatures.extend(sign(old, &d.id, timestamp, &d.payload));
        }
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("docpipe-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| (None, format!("the request failed: {}", error_chain(&e))))?;
        let code = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(code);
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk[..chunk.len().min(MAX_RESPONSE_BYTES - body.len())]);
            if body.len() >= MAX_RESPONSE_BYTES {
                break;
            }
        }
        Err((
            Some(code),
            format!(
                "answered {code}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_specification() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret_key(&generate_secret()).is_ok());
        assert!(secret_key("nope").is_err());
        assert!(secret_key("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn private_addresses_need_the_operator() {
        let none = AddressPolicy::parse("").unwrap();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "100.64.0.1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!none.allows(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(none.allows(ip.parse().unwrap()), "{ip}");
        }
        let loopback = AddressPolicy::parse("127.0.0.0/8, ::1").unwrap();
        assert!(loopback.allows("127.0.0.1".parse().unwrap()));
        assert!(loopback.allows("::1".parse().unwrap()));
        assert!(!loopback.allows("10.0.0.1".parse().unwrap()));
        assert!(
            AddressPolicy::parse("1")
                .unwrap()
                .allows("10.0.0.1".parse().unwrap())
        );
        assert!(AddressPolicy::parse("nonsense").is_err());
    }

    #[test]
    fn urls_are_http_without_credentials() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        for bad in [
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let url = check_url("http://localhost:9/").unwrap();
        let err = resolve_checked(&url, &AddressPolicy::default())
            .await
            .unwrap_err();
        assert!(err.contains("private, loopback or reserved"), "{err}");
        assert!(
            resolve_checked(&url, &AddressPolicy::parse("1").unwrap())
                .await
                .is_ok()
        );
    }

    #[test]
    fn schedules_parse_and_end() {
        assert_eq!(
            parse_schedule("5s,5m,2h,100ms").unwrap(),
            vec![
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_millis(100)
            ]
        );
        assert!(parse_schedule("5x").is_err());
        let s = parse_schedule(DEFAULT_SCHEDULE).unwrap();
        let total: Duration = s.iter().sum();
        assert!(total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(36 * 3600));
        let d = next_delay(&s, 0).unwrap();
        assert!(d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500));
        assert!(next_delay(&s, s.len()).is_none());
    }
}

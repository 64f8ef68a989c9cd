//! API keys and tenants through the real server: deny by default, scopes, revocation and expiry, and two
//! tenants that cannot see, read, search or delete each other's files (404, as for a missing id).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, assert_error, json_of};

const ADMIN: &str = "admin-key-for-tests-0123456789";

/// A request with a key in `X-API-Key`.
async fn call(
    server: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = server
        .http
        .request(method, server.url(path))
        .header("x-api-key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    json_of(req.send().await.expect("request")).await
}

async fn upload(server: &Server, key: &str, name: &str, text: &str) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let resp = server
        .http
        .post(server.url("/api/v1/upload?wait=true&timeout=120"))
        .header("x-api-key", key)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    json_of(resp).await
}

/// Creates a key with the admin key and returns (id, secret).
async fn create_key(
    server: &Server,
    tenant: &str,
    scopes: &[&str],
    expires_at: Option<String>,
) -> (String, String) {
    let mut body =
        json!({"name": format!("{tenant} {scopes:?}"), "scopes": scopes, "tenant": tenant});
    if let Some(e) = expires_at {
        body["expires_at"] = json!(e);
    }
    let (status, key) = call(server, ADMIN, Method::POST, "/api/v1/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["tenant"], tenant, "{key}");
    let secret = key["key"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("dpk_") && secret.len() > 60, "{secret}");
    (key["id"].as_str().expect("id").to_owned(), secret)
}

#[tokio::test]
async fn keys_are_required_checked_and_scoped() {
    let server = Server::start_with(&[("DOCPIPE_ADMIN_KEY", ADMIN)]).await;

    // Public routes answer without a key; everything else needs one.
    for path in ["/health", "/openapi.json", "/docs/"] {
        let resp = server.http.get(server.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let resp = server
        .http
        .get(server.url("/api/v1/files"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (s, b) = json_of(resp).await;
    assert_error(
        s,
        &b,
        401,
        "missing_api_key",
        "authentication_error",
        None,
        "API key is required",
    );
    let (s, b) = call(&server, "dpk_wrong", Method::GET, "/v1/models", None).await;
    assert_error(
        s,
        &b,
        401,
        "invalid_api_key",
        "authentication_error",
        None,
        "not valid",
    );
    let (s, b) = json_of(
        server
            .http
            .get(server.url("/metrics"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_error(
        s,
        &b,
        401,
        "missing_api_key",
        "authentication_error",
        None,
        "required",
    );

    // Bad key requests are 400 with the field named.
    let (s, b) = call(
        &server,
        ADMIN,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"name": "x", "scopes": ["root"]})),
    )
    .await;
    assert_bad_request(s, &b, Some("scopes"), "unknown scope");
    let (s, b) = call(
        &server,
        ADMIN,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"name": "x", "scopes": ["read"], "tenant": "a/b"})),
    )
    .await;
    assert_bad_request(s, &b, Some("tenant"), "tenant must");

    let (reader_id, reader) = create_key(&server, "alpha", &["read"], None).await;
    let (_, writer) = create_key(&server, "alpha", &["write"], None).await;
    let (_, tenant_admin) = create_key(&server, "alpha", &["admin"], None).await;

    // read cannot upload or delete; write cannot manage keys or scrape metrics.
    let (s, b) = upload(&server, &reader, "r.txt", "read only").await;
    assert_error(
        s,
        &b,
        403,
        "insufficient_scope",
        "permission_error",
        None,
        "`write` scope",
    );
    let (s, b) = upload(&server, &writer, "w.txt", "written by the writer").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().expect("id").to_owned();
    let (s, b) = call(
        &server,
        &reader,
        Method::GET,
        &format!("/api/v1/files/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the reader sees its tenant's file: {b}");
    let (s, b) = call(
        &server,
        &reader,
        Method::DELETE,
        &format!("/api/v1/files/{id}"),
        None,
    )
    .await;
    assert_error(
        s,
        &b,
        403,
        "insufficient_scope",
        "permission_error",
        None,
        "`write` scope",
    );
    let (s, b) = call(&server, &writer, Method::GET, "/api/v1/keys", None).await;
    assert_error(
        s,
        &b,
        403,
        "insufficient_scope",
        "permission_error",
        None,
        "`admin` scope",
    );
    let (s, b) = call(&server, &writer, Method::GET, "/metrics", None).await;
    assert_error(
        s,
        &b,
        403,
        "insufficient_scope",
        "permission_error",
        None,
        "`admin` scope",
    );
    let resp = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("get");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the admin key scrapes metrics, also as a bearer token"
    );
    // Server-wide views count every tenant: a tenant's own admin key does not see them.
    for path in [
        "/metrics",
        "/api/v1/monitoring/health",
        "/api/v1/performance/metrics",
    ] {
        let (s, b) = call(&server, &tenant_admin, Method::GET, path, None).await;
        assert_error(
            s,
            &b,
            403,
            "insufficient_scope",
            "permission_error",
            None,
            "server's admin key",
        );
        let (s, _) = call(&server, ADMIN, Method::GET, path, None).await;
        assert!(
            s == StatusCode::OK || s == StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {s}"
        );
    }

    // A tenant's admin manages its own tenant's keys only.
    let (s, b) = call(
        &server,
        &tenant_admin,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"name": "x", "scopes": ["read"], "tenant": "beta"})),
    )
    .await;
    assert_error(
        s,
        &b,
        403,
        "insufficient_scope",
        "permission_error",
        Some("tenant"),
        "own tenant",
    );
    let (s, list) = call(&server, &tenant_admin, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let keys = list["data"].as_array().expect("data");
    assert_eq!(keys.len(), 3, "{list}");
    assert!(
        keys.iter()
            .all(|k| k["tenant"] == "alpha" && k.get("key").is_none()),
        "no secrets in lists: {list}"
    );
    assert!(
        !list.to_string().contains(&reader),
        "the secret never appears again"
    );

    // Revocation takes effect on the next request.
    let (s, b) = call(
        &server,
        ADMIN,
        Method::DELETE,
        &format!("/api/v1/keys/{reader_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["revoked_at"].is_string(), "{b}");
    let (s, b) = call(&server, &reader, Method::GET, "/api/v1/files", None).await;
    assert_error(
        s,
        &b,
        401,
        "revoked_api_key",
        "authentication_error",
        None,
        "revoked",
    );
    let (s, b) = call(
        &server,
        ADMIN,
        Method::DELETE,
        &format!("/api/v1/keys/{reader_id}"),
        None,
    )
    .await;
    assert_error(
        s,
        &b,
        404,
        "key_not_found",
        "not_found_error",
        Some("key_id"),
        "no active key",
    );

    // Expiry.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, short) = create_key(&server, "alpha", &["read"], Some(soon)).await;
    let (s, _) = call(&server, &short, Method::GET, "/api/v1/files", None).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, b) = call(&server, &short, Method::GET, "/api/v1/files", None).await;
    assert_error(
        s,
        &b,
        401,
        "expired_api_key",
        "authentication_error",
        None,
        "expired",
    );
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let (s, b) = call(
        &server,
        ADMIN,
        Method::POST,
        "/api/v1/keys",
        Some(json!({"name": "x", "scopes": ["read"], "expires_at": past})),
    )
    .await;
    assert_bad_request(s, &b, Some("expires_at"), "future");

    // Mutations are audited with tenant, key id and request id.
    let log = std::fs::read_to_string(server.log()).unwrap_or_default();
    let upload_line = log
        .lines()
        .find(|l| l.contains("file.upload") && l.contains(&id))
        .unwrap_or_else(|| panic!("no audit entry for the upload in {log}"));
    assert!(
        upload_line.contains("alpha")
            && upload_line.contains("key_")
            && upload_line.contains("request_id"),
        "{upload_line}"
    );
    assert!(log.contains("key.revoke"), "{log}");
}

#[tokio::test]
async fn tenants_cannot_reach_each_others_files() {
    let server = Server::start_with(&[("DOCPIPE_ADMIN_KEY", ADMIN)]).await;
    let (_, alpha) = create_key(&server, "alpha", &["write"], None).await;
    let (_, beta) = create_key(&server, "beta", &["write"], None).await;

    let secret_text =
        "The quarterly zanzibar budget of the alpha tenant is forty two thousand marks.\n";
    let (s, a) = upload(&server, &alpha, "alpha.txt", secret_text).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["status"], "ready", "{a}");
    let a_id = a["id"].as_str().expect("id").to_owned();
    // The same content in another tenant is not deduplicated: nothing tells beta that alpha has it.
    let (s, b) = upload(&server, &beta, "beta-copy.txt", secret_text).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["deduplicated"], false, "{b}");
    let b_id = b["id"].as_str().expect("id").to_owned();
    // Within a tenant it is.
    let (_, again) = upload(&server, &alpha, "alpha-again.txt", secret_text).await;
    assert_eq!(again["deduplicated"], true, "{again}");

    // Lists show only the tenant's own files.
    let (_, list) = call(&server, &beta, Method::GET, "/api/v1/files", None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, [b_id.as_str()], "{list}");
    let (_, list) = call(&server, &beta, Method::GET, "/v1/files", None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");

    // Every way of reaching alpha's file from beta answers exactly like a missing id.
    let missing = "file-00000000000000000000000000000000";
    for (method, template) in [
        (Method::GET, "/api/v1/files/{}"),
        (Method::GET, "/api/v1/files/{}/text"),
        (Method::GET, "/api/v1/files/{}/chunks"),
        (Method::GET, "/api/v1/files/{}/content"),
        (Method::GET, "/api/v1/files/{}/events"),
        (Method::DELETE, "/api/v1/files/{}"),
        (Method::GET, "/v1/files/{}"),
        (Method::GET, "/v1/files/{}/content"),
        (Method::DELETE, "/v1/files/{}"),
    ] {
        let (s1, theirs) = call(
            &server,
            &beta,
            method.clone(),
            &template.replace("{}", &a_id),
            None,
        )
        .await;
        let (s2, absent) = call(
            &server,
            &beta,
            method.clone(),
            &template.replace("{}", missing),
            None,
        )
        .await;
        assert_eq!(s1, StatusCode::NOT_FOUND, "{method} {template}: {theirs}");
        assert_eq!(s2, StatusCode::NOT_FOUND, "{method} {template}: {absent}");
        assert_eq!(
            theirs["error"]["code"], absent["error"]["code"],
            "{template}"
        );
        assert_eq!(
            theirs["error"]["message"]
                .as_str()
                .map(|m| m.replace(&a_id, "ID")),
            absent["error"]["message"]
                .as_str()
                .map(|m| m.replace(missing, "ID")),
            "{template}"
        );
    }

    // Search: beta finds only its own copy, also when asking for alpha's file id; alpha finds its own.
    let query = json!({"query": "zanzibar budget", "mode": "bm25"});
    let (s, res) = call(
        &server,
        &beta,
        Method::POST,
        "/api/v1/search",
        Some(query.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{res}");
    let found: Vec<&str> = res["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["file_id"].as_str())
        .collect();
    assert_eq!(found, [b_id.as_str()], "{res}");
    for mode in ["bm25", "vector", "hybrid"] {
        let (_, res) = call(
            &server,
            &beta,
            Method::POST,
            "/api/v1/search",
            Some(
                json!({"query": "zanzibar budget", "mode": mode, "filters": {"file_ids": [a_id]}}),
            ),
        )
        .await;
        assert_eq!(res["count"], 0, "{mode}: {res}");
    }
    let (_, res) = call(&server, &alpha, Method::POST, "/api/v1/search", Some(query)).await;
    let found: Vec<&str> = res["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["file_id"].as_str())
        .collect();
    assert!(
        found.contains(&a_id.as_str()) && !found.contains(&b_id.as_str()),
        "{res}"
    );

    // Beta deleting its copy leaves alpha's file and text intact.
    let (s, _) = call(
        &server,
        &beta,
        Method::DELETE,
        &format!("/api/v1/files/{b_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, text) = call(
        &server,
        &alpha,
        Method::GET,
        &format!("/api/v1/files/{a_id}/text"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.to_string().contains("zanzibar"), "{text}");
}

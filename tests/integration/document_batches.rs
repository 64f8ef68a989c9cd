//! Document batches against the real server: real public documents (bench/qa/docs, with provenance in
//! bench/qa/PROVENANCE.md) with a corrupt, an empty and duplicate files; a ZIP folder with a traversal path,
//! a nested archive and skipped entries; a zip bomb; the refusals that keep nothing; events; restart.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{PROCESS_TIMEOUT, Server, json_of};

fn doc(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("bench/qa/docs")
            .join(rel),
    )
    .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Posts a multipart batch: an optional metadata part first, then `(name, bytes)` file parts.
async fn post_batch(
    server: &Server,
    metadata: Option<&str>,
    files: &[(&str, Vec<u8>)],
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new();
    if let Some(m) = metadata {
        form = form.text("metadata", m.to_owned());
    }
    for (name, bytes) in files {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name((*name).to_owned()),
        );
    }
    post_form(server, form).await
}

async fn post_form(server: &Server, form: reqwest::multipart::Form) -> (StatusCode, Value) {
    let resp = server
        .http
        .post(server.url("/api/v1/batches"))
        .multipart(form)
        .send()
        .await
        .expect("post batch");
    json_of(resp).await
}

/// Polls a batch until every file is done.
async fn wait_batch(server: &Server, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = server.get(&format!("/api/v1/batches/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "completed" {
            return body;
        }
        assert!(
            start.elapsed() < PROCESS_TIMEOUT,
            "batch did not finish: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn file_named<'a>(batch: &'a Value, name: &str) -> &'a Value {
    batch["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["filename"] == name)
        .unwrap_or_else(|| panic!("no {name} in {batch}"))
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish");
    out.into_inner()
}

async fn total_files(server: &Server) -> u64 {
    let (_, list) = server.get("/api/v1/files").await;
    list["total"].as_u64().expect("total")
}

/// Real documents of five formats, a corrupt workbook, an empty file, a duplicate inside the batch and a
/// duplicate of an earlier upload: each file's fate is reported, metadata reaches every file, the events
/// stream ends when the batch does, and the batch survives a crash.
#[tokio::test]
async fn a_mixed_batch_reports_each_files_fate() {
    let mut server = Server::start().await;
    let earlier = server
        .upload_and_wait("man-db-README.md", doc("markdown/man-db-README.md"))
        .await;
    assert_eq!(earlier["status"], "ready", "{earlier}");
    let files = [
        ("parskip.pdf", doc("pdf/parskip.pdf")),
        ("par-hlink-frags.docx", doc("docx/par-hlink-frags.docx")),
        ("test_slides.pptx", doc("pptx/test_slides.pptx")),
        ("iris.csv", doc("csv/iris.csv")),
        ("iris-copy.csv", doc("csv/iris.csv")),
        ("man-db-README.md", doc("markdown/man-db-README.md")),
        ("broken.xlsx", b"PK\x03\x04 not a workbook".to_vec()),
        ("empty.txt", Vec::new()),
    ];
    let (status, created) = post_batch(
        &server,
        Some(r#"{"project": "apollo", "source": "shared-drive"}"#),
        &files,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("docbatch-"), "{created}");
    assert_eq!(created["object"], "document_batch");
    assert_eq!(created["counts"]["total"], 8, "{created}");
    assert_eq!(created["counts"]["rejected"], 1, "{created}");
    let empty = file_named(&created, "empty.txt");
    assert_eq!(
        (&empty["status"], &empty["error"]["code"], &empty["file_id"]),
        (&json!("rejected"), &json!("empty_file"), &Value::Null),
        "{created}"
    );
    // The duplicate of an earlier, ready upload is ready at once, as a single upload would be.
    let dup = file_named(&created, "man-db-README.md");
    assert_eq!(dup["deduplicated"], true, "{created}");

    // Events: first every file's state, then changes, ending with the event that completes the batch.
    let events_text = tokio::time::timeout(
        PROCESS_TIMEOUT,
        server
            .http
            .get(server.url(&format!("/api/v1/batches/{id}/events")))
            .send()
            .await
            .expect("events")
            .text(),
    )
    .await
    .expect("the event stream ends when the batch is done")
    .expect("events body");
    let events: Vec<Value> = events_text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect();
    assert!(events.len() >= 8, "{events_text}");
    assert!(events.iter().all(|e| e["batch_id"] == id.as_str()));
    let last = events.last().expect("an event");
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["counts"]["done"], 8, "{last}");

    let done = wait_batch(&server, &id).await;
    let counts = &done["counts"];
    assert_eq!(
        (
            &counts["ready"],
            &counts["failed"],
            &counts["rejected"],
            &counts["done"]
        ),
        (&json!(6), &json!(1), &json!(1), &json!(8)),
        "{done}"
    );
    assert_eq!(done["percent"], 100.0);
    let broken = file_named(&done, "broken.xlsx");
    assert_eq!(
        (&broken["status"], &broken["error"]["code"]),
        (&json!("failed"), &json!("corrupt_file")),
        "{done}"
    );
    assert_eq!(
        file_named(&done, "iris-copy.csv")["deduplicated"],
        true,
        "{done}"
    );
    assert_eq!(
        file_named(&done, "iris.csv")["deduplicated"],
        false,
        "{done}"
    );

    // Every stored file is an ordinary file with the batch's metadata, and its text is there.
    let pdf_id = file_named(&done, "parskip.pdf")["file_id"]
        .as_str()
        .expect("pdf id")
        .to_owned();
    let (_, pdf) = server.get(&format!("/api/v1/files/{pdf_id}")).await;
    assert_eq!(
        pdf["metadata"],
        json!({"project": "apollo", "source": "shared-drive"}),
        "{pdf}"
    );
    let (status, text) = server.get(&format!("/api/v1/files/{pdf_id}/text")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(done["metadata"]["project"], "apollo");

    // Listed, and durable across a crash.
    let (_, list) = server.get("/api/v1/batches").await;
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    assert!(list["data"][0].get("files").is_none(), "{list}");
    server.crash_and_restart().await;
    let (status, again) = server.get(&format!("/api/v1/batches/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["counts"], done["counts"], "{again}");
}

/// A ZIP archive is a folder: its members become files under the zip-bomb guard, with traversal paths
/// sanitised, nested archives refused, and directories, resource forks and hidden files skipped. A zip
/// bomb is refused whole, and a DOCX (a ZIP-based document) is uploaded as itself.
#[tokio::test]
async fn a_zip_folder_is_expanded_safely() {
    let server = Server::start().await;
    let nested = zip_of(&[("inner.txt", b"inside")]);
    let folder = zip_of(&[
        ("reports/iris.csv", &doc("csv/iris.csv")),
        (
            "../../etc/escape.md",
            b"# Escaped\n\nThis member tried to leave the archive.",
        ),
        ("reports/old.zip", &nested),
        ("reports/.DS_Store", b"junk"),
        ("__MACOSX/reports/._iris.csv", b"fork"),
        ("notes/poem.odt", &doc("odt/serious_poem.odt")),
    ]);
    let bomb = zip_of(&[("zeros.txt", &vec![0u8; 64 * 1024 * 1024])]);
    let (status, created) = post_batch(
        &server,
        None,
        &[
            ("folder.zip", folder),
            ("bomb.zip", bomb),
            ("par-hlink-frags.docx", doc("docx/par-hlink-frags.docx")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let files = created["files"].as_array().expect("files");
    let summary: Vec<(String, String, String)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("-").to_owned(),
                f["archive"].as_str().unwrap_or("-").to_owned(),
                f["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(files.len(), 6, "{summary:?}");
    assert_eq!(file_named(&created, "escape.md")["path"], "etc/escape.md");
    assert_eq!(file_named(&created, "iris.csv")["archive"], "folder.zip");
    let old = file_named(&created, "old.zip");
    assert_eq!(
        (&old["status"], &old["error"]["code"]),
        (&json!("rejected"), &json!("nested_archive")),
        "{created}"
    );
    let bomb = file_named(&created, "bomb.zip");
    assert_eq!(
        (&bomb["status"], &bomb["error"]["code"]),
        (&json!("rejected"), &json!("limit_exceeded")),
        "{created}"
    );
    assert!(
        files
            .iter()
            .all(|f| !f["filename"].as_str().is_some_and(|n| n.starts_with('.')))
    );
    let id = created["id"].as_str().expect("id");
    let done = wait_batch(&server, id).await;
    for name in ["iris.csv", "escape.md", "poem.odt", "par-hlink-frags.docx"] {
        assert_eq!(file_named(&done, name)["status"], "ready", "{name}: {done}");
    }
    assert_eq!(file_named(&done, "par-hlink-frags.docx")["format"], "docx");
    assert!(server.get("/api/v1/monitoring/health").await.0.is_success());
}

/// A batch refused as a whole keeps none of its files: a bad form, metadata after the files, too many
/// files, a body over the batch limit; and the lookups answer 404 for unknown batches.
#[tokio::test]
async fn a_refused_batch_keeps_nothing() {
    let server = Server::start_with(&[
        ("DOCPIPE_MAX_BATCH_FILES", "3"),
        ("MAX_FILE_SIZE", "16384"),
        ("DOCPIPE_MAX_BATCH_SIZE", "32768"),
    ])
    .await;
    let small = |s: &str| s.as_bytes().to_vec();

    let (status, body) = post_batch(&server, None, &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request")),
        "{body}"
    );
    let (status, body) = post_batch(&server, Some("[1, 2]"), &[("a.txt", small("a"))]).await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("metadata")),
        "{body}"
    );
    let too_many: Vec<(&str, Vec<u8>)> = ["a.txt", "b.txt", "c.txt", "d.txt"]
        .iter()
        .map(|n| (*n, small(n)))
        .collect();
    let (status, body) = post_batch(&server, None, &too_many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 3 files")),
        "{body}"
    );

    // Metadata after a file part: refused, and the file already stored is removed again.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(small("first")).file_name("first.txt"),
        )
        .text("metadata", r#"{"a": "b"}"#);
    let (status, body) = post_form(&server, form).await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("metadata")),
        "{body}"
    );

    let form = reqwest::multipart::Form::new().text("files", "x");
    let (status, body) = post_form(&server, form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let resp = server
        .http
        .post(server.url("/api/v1/batches"))
        .json(&json!({"file": "x"}))
        .send()
        .await
        .expect("post");
    let (status, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Over DOCPIPE_MAX_BATCH_SIZE (32 KiB plus the multipart allowance).
    let big: Vec<(&str, Vec<u8>)> = ["a.txt", "b.txt", "c.txt"]
        .iter()
        .map(|n| (*n, vec![b'x'; 16000]))
        .collect();
    let (status, body) = post_batch(&server, None, &big[..3]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let batch_id = body["id"].as_str().expect("id").to_owned();
    let many: Vec<(&str, Vec<u8>)> = (0..3).map(|_| ("big.txt", vec![b'y'; 40000])).collect();
    let (status, body) = post_batch(&server, None, &many).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("body_too_large")),
        "{body}"
    );

    // Only the accepted batch's three files are stored (the identical bodies share one extraction).
    assert_eq!(total_files(&server).await, 3);
    let (status, body) = server.get("/api/v1/batches/docbatch-unknown").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("batch_not_found")),
        "{body}"
    );
    let (status, _) = server.get("/api/v1/batches/docbatch-unknown/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/api/v1/batches?after=docbatch-unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = server.get("/api/v1/batches?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"][0]["id"], batch_id.as_str(), "{page}");
}

/// A client that goes away in the middle of a batch leaves none of its files behind, and the server stays
/// healthy.
#[tokio::test]
async fn a_batch_cut_off_midway_keeps_nothing() {
    use tokio::io::AsyncWriteExt as _;
    let server = Server::start().await;
    let boundary = "cutcutcut";
    let part = |name: &str, body: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: text/plain\r\n\r\n{body}\r\n"
        )
    };
    let sent = format!(
        "{}{}",
        part("one.txt", "the first file, complete"),
        part("two.txt", "the second file, also complete")
    );
    let host = server.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST /api/v1/batches HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; \
         boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        sent.len() + 100_000
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(sent.as_bytes()).await.expect("parts");
    tcp.write_all(b"--cutcutcut\r\nContent-Disposition: form-data; name=\"file\"; filename=\"three.txt\"\r\n\r\nthe thi")
        .await
        .expect("a partial part");
    // The two complete files are stored while the request is still open.
    let deadline = Instant::now() + Duration::from_secs(20);
    while total_files(&server).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the complete parts were never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(20);
    while total_files(&server).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned batch's files were kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, batches) = server.get("/api/v1/batches").await;
    assert_eq!(batches["data"], json!([]), "{batches}");
    assert!(server.get("/health").await.0.is_success());
}

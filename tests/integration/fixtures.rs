//! Every fixture with an expectation beside it goes through the real server and must come out exactly as
//! expected: `NAME.EXT.expected.txt` is the whole extracted text; `NAME.EXT.expected.json` holds metadata
//! values the document must carry (numbers within 0.1), or `{"error": CODE}` when the upload must be refused
//! or the file must fail with that code.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{Server, fixtures_dir};

/// (fixture, expectation) pairs.
fn cases() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(fixtures_dir())
        .into_iter()
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        for suffix in [".expected.txt", ".expected.json"] {
            if let Some(source) = name.strip_suffix(suffix) {
                out.push((path.with_file_name(source), path.to_owned()));
            }
        }
    }
    out.sort();
    out
}

fn expected_error(expectation: &Path) -> Option<String> {
    let text = std::fs::read_to_string(expectation).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["error"].as_str().map(str::to_owned)
}

fn metadata_matches(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64().unwrap_or(f64::NAN) - b.as_f64().unwrap_or(f64::NAN)).abs() <= 0.1
        }
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|g| metadata_matches(v, g))),
        _ => want == got,
    }
}

#[tokio::test]
async fn every_fixture_extracts_as_expected() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "expected fixtures of every format, found {}",
        cases.len()
    );
    let server = Server::start().await;
    let mut failures = Vec::new();
    let mut formats = std::collections::BTreeSet::new();
    for (source, expectation) in &cases {
        let rel = source
            .strip_prefix(fixtures_dir())
            .unwrap_or(source)
            .display()
            .to_string();
        let bytes = std::fs::read(source).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let name = source.file_name().and_then(|n| n.to_str()).unwrap_or("x");
        let want_error = expected_error(expectation);
        let (status, record) = server
            .upload_to("/api/v1/upload?wait=true&timeout=180", name, bytes)
            .await;
        let got_error = if status.is_success() {
            record["error"]["code"].as_str().map(str::to_owned)
        } else {
            record["error"]["code"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| Some(status.to_string()))
        };
        if want_error.is_some() || got_error.is_some() {
            if want_error != got_error {
                failures.push(format!(
                    "{rel}: expected error {want_error:?}, got {got_error:?}: {record}"
                ));
            }
            continue;
        }
        if record["status"] != "ready" {
            failures.push(format!("{rel}: not ready: {record}"));
            continue;
        }
        formats.insert(record["format"].as_str().unwrap_or_default().to_owned());
        let id = record["id"].as_str().expect("id");
        let (_, doc) = server.get(&format!("/api/v1/files/{id}/text")).await;
        if let Some(err) = compare(expectation, &doc) {
            failures.push(format!("{rel}: {err}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    for format in [
        "pdf", "docx", "pptx", "odt", "xlsx", "xls", "xlsb", "ods", "csv", "tsv", "text",
        "markdown", "json", "html", "png", "jpeg", "mp3", "wav", "flac", "ogg",
    ] {
        assert!(
            formats.contains(format),
            "no fixture of format {format} was checked: {formats:?}"
        );
    }
}

fn compare(expectation: &Path, doc: &Value) -> Option<String> {
    let expected = std::fs::read_to_string(expectation).ok()?;
    if expectation.extension().is_some_and(|e| e == "json") {
        let want: Value = serde_json::from_str(&expected).ok()?;
        return (!metadata_matches(&want, &doc["metadata"]))
            .then(|| format!("metadata {} lacks {want}", doc["metadata"]));
    }
    let got = doc["text"].as_str().unwrap_or_default();
    let want = expected.strip_suffix('\n').unwrap_or(&expected);
    (got != want).then(|| format!("text differs\n--- expected\n{want}\n--- got\n{got}"))
}

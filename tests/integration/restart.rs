//! Crash safety: after `kill -9`, every acknowledged upload is still there, files that were mid-processing
//! are processed again, and nothing is half-written.

use crate::common::{Server, fixture};

#[tokio::test]
async fn acknowledged_uploads_survive_kill_9_and_interrupted_files_finish() {
    let mut server = Server::start_with(&[("DOCPIPE_INGEST_WORKERS", "1")]).await;
    let mut ids = Vec::new();
    // A slow file (OCR) first so the later ones are still queued or processing when the process dies.
    let (_, scan) = server.upload("scan.pdf", fixture("pdf/scanned.pdf")).await;
    ids.push(scan["id"].as_str().expect("id").to_owned());
    for i in 0..5 {
        let (_, body) = server
            .upload(
                &format!("f{i}.txt"),
                format!("file number {i}").into_bytes(),
            )
            .await;
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    // Wait until the scan is being processed, then crash.
    for _ in 0..200 {
        let (_, f) = server.get(&format!("/api/v1/files/{}", ids[0])).await;
        if f["status"] == "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.crash_and_restart().await;
    for id in &ids {
        let done = server.wait_done(id).await;
        assert_eq!(done["status"], "ready", "{done}");
    }
    let (_, text) = server.get(&format!("/api/v1/files/{}/text", ids[3])).await;
    assert_eq!(text["text"], "file number 2");
    let (_, list) = server.get("/api/v1/files").await;
    assert_eq!(list["total"], 6);
    // No temp files are left behind.
    let tmp = std::fs::read_dir(server.data_dir.join("tmp"))
        .expect("tmp dir")
        .count();
    assert_eq!(tmp, 0);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_names_the_one_using_it() {
    let server = Server::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let second = tokio::process::Command::new(&*crate::common::BIN)
        .arg("serve")
        .env("DOCPIPE_HOST", "127.0.0.1")
        .env("DOCPIPE_PORT", port.to_string())
        .env("DOCPIPE_DATA_DIR", &server.data_dir)
        .env("DOCPIPE_CHAT_MODELS", "smollm2")
        .env_remove("API_KEY")
        .env_remove("DOCPIPE_ADMIN_KEY")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), second)
        .await
        .expect("the second server stops on its own")
        .expect("run docpipe serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let dir = server.data_dir.display().to_string();
    assert!(
        stderr.contains(&format!(
            "the data directory {dir} is in use by another docpipe process (pid {},",
            server.pid()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("reindex"), "{stderr}");
    // The first server is unharmed.
    let (status, _) = server.get("/api/v1/files").await;
    assert_eq!(status, reqwest::StatusCode::OK);
}

//! Crafted and broken files: each fails with a clear reason, bounded in time and memory, and the server
//! keeps serving.

use std::io::{Cursor, Write};

use crate::common::{Server, fixture};

/// A DOCX-shaped ZIP whose document.xml inflates from ~100 KB to 100 MB.
fn zip_bomb(member: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    for (name, data) in extra {
        w.start_file(*name, opts).expect("start");
        w.write_all(data).expect("write");
    }
    w.start_file(member, opts.large_file(false)).expect("start");
    let block = vec![b'A'; 1024 * 1024];
    for _ in 0..100 {
        w.write_all(&block).expect("write");
    }
    w.finish().expect("finish");
    out.into_inner()
}

/// A PNG header claiming 100000 x 100000 pixels (an image decompression bomb).
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PDF whose page tree's /Kids points back at itself.
fn pdf_loop() -> Vec<u8> {
    let objects = [
        "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n",
        "2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj\n",
        "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n",
        "4 0 obj << /Length 0 >> stream\n\nendstream endobj\n",
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for o in objects {
        offsets.push(pdf.len());
        pdf.extend_from_slice(o.as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer << /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

fn truncated(rel: &str) -> Vec<u8> {
    let bytes = fixture(rel);
    bytes[..bytes.len() / 2].to_vec()
}

#[tokio::test]
async fn crafted_files_fail_cleanly_and_the_server_stays_healthy() {
    let server = Server::start().await;
    let content_types = [
        (
            "word/_rels/document.xml.rels",
            b"<Relationships/>".as_slice(),
        ),
        ("[Content_Types].xml", b"<Types/>".as_slice()),
    ];
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "bomb.docx",
            zip_bomb("word/document.xml", &content_types),
            &["limit_exceeded"],
        ),
        (
            "bomb.xlsx",
            zip_bomb("xl/workbook.xml", &[]),
            &["limit_exceeded"],
        ),
        ("bomb.png", png_bomb(), &["limit_exceeded"]),
        ("loop.pdf", pdf_loop(), &["corrupt_file", "no_content"]),
        (
            "cut.pdf",
            truncated("pdf/text-3page.pdf"),
            &["corrupt_file"],
        ),
        (
            "cut.docx",
            truncated("office/report.docx"),
            &["corrupt_file"],
        ),
        (
            "cut.xlsx",
            truncated("sheet/calamine_base.xlsx"),
            &["corrupt_file"],
        ),
        ("cut.png", truncated("image/text.png"), &["corrupt_file"]),
        ("cut.flac", truncated("audio/jfk.flac"), &["corrupt_file"]),
        (
            "garbage.pdf",
            b"%PDF-1.7\n\x00\x01garbage garbage".to_vec(),
            &["corrupt_file"],
        ),
        (
            "locked.xlsx",
            fixture("sheet/calamine_password.xlsx"),
            &["password_protected"],
        ),
        (
            "locked.pdf",
            fixture("pdf/encrypted-user-password.pdf"),
            &["encrypted_pdf"],
        ),
    ];
    for (name, bytes, codes) in cases {
        let record = server.upload_and_wait(name, bytes).await;
        assert_eq!(record["status"], "failed", "{name}: {record}");
        let code = record["error"]["code"].as_str().unwrap_or_default();
        assert!(
            codes.contains(&code),
            "{name}: code {code}, expected one of {codes:?}: {record}"
        );
        assert!(
            record["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{name}: {record}"
        );
    }
    // Still healthy and still working.
    let ok = server
        .upload_and_wait("after.txt", b"still alive".to_vec())
        .await;
    assert_eq!(ok["status"], "ready");
}

#[tokio::test]
async fn extraction_time_is_bounded_by_the_pipeline_timeout() {
    // OCR of three pages rendered at 600 dpi takes several seconds; a 1-second budget must stop it.
    let pipelines = crate::common::slow_ocr_pipelines();
    let server = Server::start_with(&[(
        "DOCPIPE_PIPELINES_DIR",
        pipelines.path().to_str().expect("utf-8"),
    )])
    .await;
    let started = std::time::Instant::now();
    let record = server
        .upload_and_wait("slow.pdf", fixture("pdf/text-3page.pdf"))
        .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["code"], "extraction_timeout", "{record}");
    assert!(
        started.elapsed().as_secs() < 15,
        "gave up within the grace period"
    );
}

#[tokio::test]
async fn a_bad_pipeline_definition_stops_start_up_with_a_clear_message() {
    let dir =
        std::env::temp_dir().join(format!("docpipe-badpipe-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for c in ["pdf", "office", "sheet", "text", "image", "audio"] {
        let body = format!("category = \"{c}\"\ndescription = \"x\"\nsteps = [\"extract\"]\n");
        std::fs::write(dir.join(format!("{c}.toml")), body).expect("write");
    }
    std::fs::write(
        dir.join("sheet.toml"),
        "category = \"sheet\"\nsteps = [\"extract\"]\n[limits]\nmax_cells = -1\n",
    )
    .expect("write");
    let out = std::process::Command::new(&*crate::common::BIN)
        .arg("serve")
        .env("DOCPIPE_PIPELINES_DIR", &dir)
        .env("DOCPIPE_DATA_DIR", dir.join("data"))
        .env("DOCPIPE_PORT", "1")
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sheet.toml"), "{stderr}");
}

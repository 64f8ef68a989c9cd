//! Zip-bomb guard for ZIP-based containers (DOCX, PPTX, ODT, XLSX, XLSB, ODS), after Apache POI's
//! `ZipSecureFile`: the declared total inflated size and each member's inflate ratio are checked before
//! anything is inflated, and [`Container::read`] caps what it actually inflates (declared sizes can lie).
//! [`Folder`] reads a ZIP archive of documents (a folder sent as one file) under the same guard.

use std::io::{Cursor, Read, Seek};

use zip::ZipArchive;

use super::{ExtractError, Limits};

/// Members smaller than this when inflated are never flagged for their ratio (tiny XML parts compress well).
const RATIO_CHECK_MIN_BYTES: u64 = 1024 * 1024;

/// An opened, checked ZIP container.
pub struct Container<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    limits: &'a Limits,
}

/// Opens `bytes` as a ZIP container and checks its central directory against the limits.
pub fn open<'a>(bytes: &'a [u8], limits: &'a Limits) -> Result<Container<'a>, ExtractError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ExtractError::Corrupt(format!("not a valid ZIP container: {e}")))?;
    let total = check_members(&mut zip, limits.max_inflate_ratio)?;
    check_total(total, limits)?;
    Ok(Container { zip, limits })
}

/// Checks every member's declared inflate ratio; the declared inflated total.
fn check_members<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    max_ratio: u64,
) -> Result<u64, ExtractError> {
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let member = zip
            .by_index_raw(i)
            .map_err(|e| ExtractError::Corrupt(format!("damaged ZIP member: {e}")))?;
        let size = member.size();
        total = total.saturating_add(size);
        let compressed = member.compressed_size().max(1);
        if size >= RATIO_CHECK_MIN_BYTES && size / compressed > max_ratio {
            return Err(ExtractError::LimitExceeded(format!(
                "ZIP member {} inflates {}x (limit {}x): possible zip bomb",
                String::from_utf8_lossy(member.name_raw()),
                size / compressed,
                max_ratio
            )));
        }
    }
    Ok(total)
}

fn check_total(total: u64, limits: &Limits) -> Result<(), ExtractError> {
    if total > limits.max_inflated_bytes {
        return Err(ExtractError::LimitExceeded(format!(
            "ZIP container inflates to {total} bytes (limit {}): possible zip bomb",
            limits.max_inflated_bytes
        )));
    }
    Ok(())
}

impl Container<'_> {
    /// Names of all members, in archive order.
    pub fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect()
    }

    /// True when a member with this exact name exists.
    pub fn has(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// Inflates one member, never more than `max_inflated_bytes` whatever its header claims.
    /// `Ok(None)` when there is no such member.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, ExtractError> {
        let cap = self.limits.max_inflated_bytes;
        let mut member = match self.zip.by_name(name) {
            Ok(m) => m,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(ExtractError::Corrupt(format!("cannot read {name}: {e}"))),
        };
        let mut out = Vec::with_capacity(usize::try_from(member.size().min(cap)).unwrap_or(0));
        (&mut member)
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| ExtractError::Corrupt(format!("cannot inflate {name}: {e}")))?;
        check_total(out.len() as u64, self.limits)?;
        Ok(Some(out))
    }

    /// Like [`read`](Self::read) but a missing member is a corrupt file.
    pub fn require(&mut self, name: &str) -> Result<Vec<u8>, ExtractError> {
        self.read(name)?
            .ok_or_else(|| ExtractError::Corrupt(format!("the container has no {name}")))
    }
}

/// A ZIP archive of documents (a folder sent as one file), checked by the zip-bomb guard when opened.
pub struct Folder<R: Read + Seek> {
    zip: ZipArchive<R>,
    /// Largest member read, in bytes (a larger one is refused, whatever its header claims).
    max_member: u64,
    /// Most bytes inflated over all members.
    max_total: u64,
    inflated: u64,
}

/// One member of a [`Folder`].
#[derive(Debug)]
pub enum Member {
    /// A file: its sanitised path inside the archive and its bytes.
    File { path: String, bytes: Vec<u8> },
    /// A file that could not be read: its sanitised path, and why.
    Refused { path: String, error: MemberError },
}

/// Why a member of a folder was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("the member inflates to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Extract(#[from] ExtractError),
}

impl<R: Read + Seek> Folder<R> {
    /// Checks an opened ZIP archive as a folder. Refused as a whole when a member's ratio marks a zip bomb
    /// or its declared inflated total is past `max_total`.
    pub fn new(
        mut zip: ZipArchive<R>,
        max_member: u64,
        max_total: u64,
        max_ratio: u64,
    ) -> Result<Folder<R>, ExtractError> {
        let total = check_members(&mut zip, max_ratio)?;
        if total > max_total {
            return Err(ExtractError::LimitExceeded(format!(
                "the archive inflates to {total} bytes (limit {max_total}): possible zip bomb"
            )));
        }
        Ok(Folder {
            zip,
            max_member,
            max_total,
            inflated: 0,
        })
    }

    /// Indexes of the members that are files worth uploading, in archive order: directories, macOS
    /// resource forks (`__MACOSX/`) and hidden files (a path component starting with `.`) are skipped, as
    /// `docpipe ingest` skips them in a folder.
    pub fn files(&mut self) -> Vec<usize> {
        (0..self.zip.len())
            .filter(|&i| {
                self.zip.by_index_raw(i).is_ok_and(|m| {
                    let path = sanitize_path(m.name_raw());
                    !m.is_dir()
                        && !path.is_empty()
                        && !path
                            .split('/')
                            .any(|c| c.starts_with('.') || c == "__MACOSX")
                })
            })
            .collect()
    }

    /// Reads one member, never more than the member and total limits whatever its header claims.
    pub fn read(&mut self, index: usize) -> Member {
        let budget = self
            .max_member
            .min(self.max_total.saturating_sub(self.inflated));
        let path = self
            .zip
            .by_index_raw(index)
            .map(|m| sanitize_path(m.name_raw()))
            .unwrap_or_default();
        let result = match self.zip.by_index(index) {
            Ok(mut m) => {
                let mut out = Vec::new();
                (&mut m)
                    .take(budget + 1)
                    .read_to_end(&mut out)
                    .map(|_| out)
                    .map_err(|e| {
                        MemberError::Extract(ExtractError::Corrupt(format!("cannot inflate: {e}")))
                    })
            }
            Err(zip::result::ZipError::UnsupportedArchive(what)) => Err(MemberError::Extract(
                ExtractError::Corrupt(format!("unsupported ZIP member: {what}")),
            )),
            Err(other) => Err(MemberError::Extract(ExtractError::Corrupt(format!(
                "damaged ZIP member: {other}"
            )))),
        };
        let result = result.and_then(|bytes| {
            self.inflated = self.inflated.saturating_add(bytes.len() as u64);
            if bytes.len() as u64 > budget {
                if budget < self.max_member {
                    return Err(MemberError::Extract(ExtractError::LimitExceeded(format!(
                        "the archive inflates to more than {} bytes: possible zip bomb",
                        self.max_total
                    ))));
                }
                return Err(MemberError::TooLarge {
                    limit: self.max_member,
                });
            }
            Ok(bytes)
        });
        match result {
            Ok(bytes) => Member::File { path, bytes },
            Err(error) => Member::Refused { path, error },
        }
    }
}

/// A member's name as a safe relative path: `/`-separated, without empty, `.` or `..` components, drive
/// letters or control characters. Empty when nothing is left.
pub fn sanitize_path(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split(['/', '\\'])
        .map(|c| c.chars().filter(|ch| !ch.is_control()).collect::<String>())
        .filter(|c| {
            let c = c.trim();
            !c.is_empty() && c != "." && c != ".." && !(c.len() == 2 && c.ends_with(':'))
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file(name, opts).expect("start");
        w.write_all(data).expect("write");
        w.finish().expect("finish");
        out.into_inner()
    }

    #[test]
    fn reads_small_members() {
        let bytes = zip_with("a.xml", b"<a/>");
        let limits = Limits::default();
        let mut c = open(&bytes, &limits).expect("open");
        assert_eq!(c.read("a.xml").expect("read"), Some(b"<a/>".to_vec()));
        assert_eq!(c.read("missing").expect("read"), None);
    }

    #[test]
    fn refuses_a_bomb() {
        let bytes = zip_with("bomb.xml", &vec![b'a'; 8 * 1024 * 1024]);
        let limits = Limits::default();
        let err = open(&bytes, &limits).err().expect("a bomb must be refused");
        assert_eq!(err.code(), "limit_exceeded");
        let small = Limits {
            max_inflated_bytes: 1000,
            ..Limits::default()
        };
        let bytes = zip_with("big.xml", &[b'x'; 5000]);
        assert_eq!(
            open(&bytes, &small).err().expect("too big").code(),
            "limit_exceeded"
        );
    }

    #[test]
    fn member_paths_are_sanitised() {
        assert_eq!(sanitize_path(b"../../etc/passwd"), "etc/passwd");
        assert_eq!(sanitize_path(b"/abs/./x.txt"), "abs/x.txt");
        assert_eq!(sanitize_path(b"C:\\Users\\a.pdf"), "Users/a.pdf");
        assert_eq!(sanitize_path(b"a\x00b/c\nd.md"), "ab/cd.md");
        assert_eq!(sanitize_path(b"../.."), "");
    }

    fn folder_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            if name.ends_with('/') {
                w.add_directory(*name, opts).expect("dir");
            } else {
                w.start_file(*name, opts).expect("start");
                w.write_all(data).expect("write");
            }
        }
        w.finish().expect("finish");
        out.into_inner()
    }

    #[test]
    fn a_folder_lists_its_files_and_caps_each_member() {
        let bytes = folder_of(&[
            ("docs/", b""),
            ("docs/a.txt", b"alpha"),
            ("__MACOSX/docs/._a.txt", b"fork"),
            ("docs/.DS_Store", b"junk"),
            ("../evil.md", b"# evil"),
            ("big.txt", &[b'b'; 100]),
        ]);
        let mut f = Folder::new(
            ZipArchive::new(Cursor::new(bytes)).expect("zip"),
            50,
            1000,
            100,
        )
        .expect("open");
        let files = f.files();
        assert_eq!(
            files.len(),
            3,
            "directory, fork and hidden file are skipped"
        );
        let read: Vec<Member> = files.into_iter().map(|i| f.read(i)).collect();
        assert!(
            matches!(&read[0], Member::File { path, bytes } if path == "docs/a.txt" && bytes == b"alpha")
        );
        assert!(matches!(&read[1], Member::File { path, .. } if path == "evil.md"));
        assert!(
            matches!(&read[2], Member::Refused { path, error: MemberError::TooLarge { limit: 50 } } if path == "big.txt")
        );
    }

    #[test]
    fn a_folder_bomb_is_refused_whole() {
        let bytes = folder_of(&[("bomb.txt", &vec![b'a'; 8 * 1024 * 1024])]);
        let err = Folder::new(
            ZipArchive::new(Cursor::new(bytes)).expect("zip"),
            u64::MAX,
            u64::MAX,
            100,
        )
        .err()
        .expect("a bomb must be refused");
        assert_eq!(err.code(), "limit_exceeded");
    }

    #[test]
    fn garbage_is_corrupt() {
        let limits = Limits::default();
        assert_eq!(
            open(b"PK\x03\x04junk", &limits)
                .err()
                .expect("corrupt")
                .code(),
            "corrupt_file"
        );
    }
}

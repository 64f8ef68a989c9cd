//! Zip-bomb guard for ZIP-based containers (DOCX, PPTX, ODT, XLSX, XLSB, ODS), after Apache POI's
//! `ZipSecureFile`: the declared total inflated size and each member's inflate ratio are checked before
//! anything is inflated, and [`read_member`] caps what it actually inflates (declared sizes can lie).

use std::io::{Cursor, Read};

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
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let member = zip
            .by_index_raw(i)
            .map_err(|e| ExtractError::Corrupt(format!("damaged ZIP member: {e}")))?;
        let size = member.size();
        total = total.saturating_add(size);
        let compressed = member.compressed_size().max(1);
        if size >= RATIO_CHECK_MIN_BYTES && size / compressed > limits.max_inflate_ratio {
            return Err(ExtractError::LimitExceeded(format!(
                "ZIP member {} inflates {}x (limit {}x): possible zip bomb",
                String::from_utf8_lossy(member.name_raw()),
                size / compressed,
                limits.max_inflate_ratio
            )));
        }
    }
    check_total(total, limits)?;
    Ok(Container { zip, limits })
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
            .file_names_raw()
            .map(|n| String::from_utf8_lossy(n).into_owned())
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
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
        assert_eq!(open(&bytes, &small).err().expect("too big").code(), "limit_exceeded");
    }

    #[test]
    fn garbage_is_corrupt() {
        let limits = Limits::default();
        assert_eq!(open(b"PK\x03\x04junk", &limits).err().expect("corrupt").code(), "corrupt_file");
    }
}

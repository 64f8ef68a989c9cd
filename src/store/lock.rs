//! The data directory's lock: one process at a time owns a data directory (its database, blobs and
//! indexes). An exclusive advisory lock on `docpipe.lock` is taken before anything is opened and held for
//! the life of the process; the kernel releases it when the process ends, however it ends. The file holds
//! the owner's pid, so a second process can say which one has the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "docpipe.lock";

/// The held lock; dropping it (with the last [`super::Store`] clone) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) and records this process's pid in it, or fails with
    /// [`StoreError::InUse`] naming the directory and the pid of the process that holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, StoreError> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder may not have written its pid yet.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::InUse {
                    dir: data_dir.to_path_buf(),
                    pid: if holder.is_empty() {
                        "unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(DataDirLock { _file: file })
    }
}

/// The directory and pid in [`StoreError::InUse`]'s message.
pub(super) fn in_use_message(dir: &Path, pid: &str) -> String {
    format!(
        "the data directory {} is in use by another docpipe process (pid {pid}, recorded in {}): \
         stop that process, or give this one another DOCPIPE_DATA_DIR",
        dir.display(),
        LOCK_FILE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = DataDirLock::acquire(dir.path()).expect("first lock");
        let pid = std::process::id().to_string();
        match DataDirLock::acquire(dir.path()) {
            Err(StoreError::InUse { dir: d, pid: p }) => {
                assert_eq!(d, dir.path());
                assert_eq!(p, pid);
                let message = StoreError::InUse { dir: d, pid: p }.to_string();
                assert!(message.contains(&format!("pid {pid}")), "{message}");
                assert!(
                    message.contains(&dir.path().display().to_string()),
                    "{message}"
                );
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(held);
        // Released with its holder: the next process takes it.
        DataDirLock::acquire(dir.path()).expect("lock after release");
    }
}

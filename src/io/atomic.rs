//! Atomic file writes, and the clean-up of what an interrupted one leaves behind.
//!
//! A file is written to a temporary file in the same directory (`.<name>.tmp.<pid>.<n>`),
//! fsynced, renamed over the final name, and the directory is fsynced. A crash leaves
//! either the old complete file or the new one under the final name, plus at worst the
//! temporary file, which [`remove_stale_temp_files`] deletes once nobody can be writing
//! it (the run directory's lock is held); on an error the temporary file is removed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary name used while writing `path` (same directory).
fn temp_path(path: &Path) -> PathBuf {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let n = TMP_COUNTER.fetch_add(1, Ordering::SeqCst);
    path.with_file_name(format!(".{file}.tmp.{}.{n}", std::process::id()))
}

/// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory. On error the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "{}: a checkpoint path must name a file",
            path.display()
        )));
    }
    let tmp = temp_path(path);
    let res = (|| -> Result<()> {
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
        return res;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Make the rename durable. Directories cannot be opened for sync on every platform;
    // failing to open one is not an error of the write.
    if let Ok(d) = File::open(&dir) {
        d.sync_all().map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// True for a name [`write_atomic`] gives its temporary files.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp.")
}

/// Remove the temporary files of interrupted [`write_atomic`] calls in `dir`; returns how
/// many. Only call it while no other process can be writing into `dir`.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && is_temp_name(&entry.file_name().to_string_lossy()) {
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            n += 1;
        }
    }
    Ok(n)
}

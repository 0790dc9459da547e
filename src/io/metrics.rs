//! The metrics log: one JSON object per line (JSON Lines), e.g.
//! `{"step":120,"d_loss":1.23,"g_loss":0.87}`. The trainer chooses the fields.
//! Each line goes out in a single `write` and is flushed, so a crash loses at most the
//! line being written. Non-finite values are written as `null` and read back as NaN.
//!
//! [`read_metrics`] reloads the history (for the loss plot after a resume); a line that
//! is not a JSON object of numbers is an error naming the file and the line number,
//! except a torn final line without a trailing newline (a crash mid-write), which is
//! skipped. [`MetricsLog::resume`] drops rows past the resumed step (rewriting the file
//! atomically, the kept lines byte for byte; a corrupt line truncates it there, with a
//! warning) and appends from there.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One metrics row: field name -> value.
pub type MetricsRow = BTreeMap<String, f64>;

/// An append-only JSON Lines metrics writer.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    recovered: Option<String>,
}

/// Format one row as a JSON object line (with trailing newline), fields in the given order.
pub fn format_line(fields: &[(&str, f64)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::Value::String((*k).to_string()).to_string());
        s.push(':');
        if v.is_finite() {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                s.push_str(&format!("{}", *v as i64));
            } else {
                // `{:?}` prints the shortest representation that round-trips exactly.
                s.push_str(&format!("{v:?}"));
            }
        } else {
            s.push_str("null");
        }
    }
    s.push_str("}\n");
    s
}

impl MetricsLog {
    /// Create (or truncate) the log at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<MetricsLog> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(MetricsLog {
            path,
            file,
            recovered: None,
        })
    }

    /// Open the log at `path` for appending (created if missing).
    pub fn append(path: impl AsRef<Path>) -> Result<MetricsLog> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(MetricsLog {
            path,
            file,
            recovered: None,
        })
    }

    /// For a resume at `step`: keep the lines of the existing log whose `step` field is at
    /// most `step` (lines without a `step` are kept) byte for byte, rewrite the file
    /// atomically with them, and open it for appending. Returns the log and the kept rows
    /// (for the plot). A corrupt line ends what is kept: the log is truncated there and
    /// [`MetricsLog::recovered`] says so (a torn last line, the mark of a crash mid-write,
    /// is dropped without a word).
    pub fn resume(path: impl AsRef<Path>, step: u64) -> Result<(MetricsLog, Vec<MetricsRow>)> {
        let path = path.as_ref();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let (mut kept_text, mut kept, mut recovered) = (String::new(), Vec::new(), None);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let body = line.trim();
            if body.is_empty() {
                continue;
            }
            match parse_line(body) {
                Ok(row) => {
                    if row.get("step").is_none_or(|s| *s <= step as f64) {
                        kept_text.push_str(line.trim_end_matches('\n'));
                        kept_text.push('\n');
                        kept.push(row);
                    }
                }
                Err(msg) => {
                    let torn = i + 1 == lines.len() && !line.ends_with('\n');
                    if !torn {
                        recovered = Some(format!(
                            "{}: line {}: corrupt metrics line ({msg}); the log was truncated \
                             there, keeping the {} rows before it",
                            path.display(),
                            i + 1,
                            kept.len()
                        ));
                    }
                    break;
                }
            }
        }
        super::image::write_file_atomic(path, kept_text.as_bytes())?;
        let mut log = MetricsLog::append(path)?;
        log.recovered = recovered;
        Ok((log, kept))
    }

    /// What [`MetricsLog::resume`] had to drop from a damaged log, if anything.
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// The file this log writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one row and flush it.
    pub fn log(&mut self, fields: &[(&str, f64)]) -> Result<()> {
        let line = format_line(fields);
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Read a JSON Lines metrics log: one map per non-empty line. Values that are `null`
/// read as NaN. A corrupt line is an error naming the file and the (1-based) line number;
/// a torn last line without a trailing newline is skipped.
pub fn read_metrics(path: impl AsRef<Path>) -> Result<Vec<MetricsRow>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let ends_with_newline = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(row) => rows.push(row),
            Err(msg) => {
                if i + 1 == lines.len() && !ends_with_newline {
                    break; // torn final write
                }
                return Err(Error::invalid(format!(
                    "{}: line {}: corrupt metrics line: {msg}",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(rows)
}

fn parse_line(line: &str) -> std::result::Result<MetricsRow, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON ({e})"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    let mut row = MetricsRow::new();
    for (k, val) in obj {
        let x = match val {
            serde_json::Value::Null => f64::NAN,
            serde_json::Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| format!("field '{k}' is not a number"))?,
            _ => return Err(format!("field '{k}' is not a number: {val}")),
        };
        row.insert(k.clone(), x);
    }
    Ok(row)
}

/// The `(x, y)` points of field `y_key` against field `x_key` (e.g. `"step"`, `"d_loss"`)
/// over `rows`, skipping rows that lack either field — ready for
/// [`save_line_plot`](super::plot::save_line_plot).
pub fn series(rows: &[MetricsRow], x_key: &str, y_key: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| Some((*r.get(x_key)?, *r.get(y_key)?)))
        .collect()
}

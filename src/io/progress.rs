//! A single-line progress display for long loops, on stderr:
//! `step 120/2000 [##........] 6% d 1.23 g 0.87 | 512 img/s | ETA 3m12s`.
//! On a terminal the line is redrawn in place (`\r`, at most ~10 times a second);
//! otherwise (CI logs, files) a plain line is printed every 10% of the run.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Format a duration in seconds as `45s`, `3m12s`, `1h05m`; `?` when unknown.
pub fn format_eta(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".to_string();
    }
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Format a metric value compactly: 3 significant decimals, scientific when very small or large.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Seconds left, given `done` of `total` steps took `elapsed` seconds; NaN if unknown.
pub fn eta_secs(done: u64, total: u64, elapsed: f64) -> f64 {
    if done == 0 || elapsed <= 0.0 {
        return f64::NAN;
    }
    total.saturating_sub(done) as f64 * elapsed / done as f64
}

/// The progress line (without `\r` or newline). Fields named `img/s` (or ending in `/s`)
/// print as `| <v> img/s`; the others as `<name> <value>`.
pub fn format_line(step: u64, total: u64, fields: &[(&str, f64)], eta: f64) -> String {
    const WIDTH: usize = 20;
    let frac = if total == 0 {
        1.0
    } else {
        (step as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (frac * WIDTH as f64).floor() as usize;
    let mut s = format!(
        "step {step}/{total} [{}{}] {}%",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        (frac * 100.0).floor() as u64
    );
    for (name, v) in fields {
        if name.ends_with("/s") {
            s.push_str(&format!(" | {v:.0} {name}"));
        } else {
            s.push_str(&format!(" {name} {}", format_value(*v)));
        }
    }
    s.push_str(&format!(" | ETA {}", format_eta(eta)));
    s
}

/// A progress display for `total` steps.
pub struct Progress {
    total: u64,
    start: Instant,
    start_step: Option<u64>,
    tty: bool,
    last_draw: Option<Instant>,
    last_decile: Option<u64>,
    last_len: usize,
    quiet: bool,
}

impl Progress {
    /// A display for `total` steps; redraws in place when stderr is a terminal.
    pub fn new(total: u64) -> Progress {
        Progress {
            total,
            start: Instant::now(),
            start_step: None,
            tty: std::io::stderr().is_terminal(),
            last_draw: None,
            last_decile: None,
            last_len: 0,
            quiet: false,
        }
    }

    /// A display that prints nothing (for tests and `--quiet`).
    pub fn quiet(total: u64) -> Progress {
        Progress {
            quiet: true,
            ..Progress::new(total)
        }
    }

    /// Report that `step` steps are done (ETA measured from the first update, so a resumed
    /// run's ETA is right), with the fields to show.
    pub fn update(&mut self, step: u64, fields: &[(&str, f64)]) {
        let now = Instant::now();
        let first = *self.start_step.get_or_insert_with(|| {
            self.start = now;
            step
        });
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let eta = eta_secs(
            step.saturating_sub(first),
            self.total.saturating_sub(first),
            elapsed,
        );
        if self.quiet {
            return;
        }
        let line = format_line(step, self.total, fields, eta);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let due = self
                .last_draw
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
            if !due && step < self.total {
                return;
            }
            self.last_draw = Some(now);
            let pad = self.last_len.saturating_sub(line.len());
            let _ = write!(err, "\r{line}{}", " ".repeat(pad));
            self.last_len = line.len();
            let _ = err.flush();
        } else {
            let decile = (step.min(self.total) * 10)
                .checked_div(self.total)
                .unwrap_or(10);
            if self.last_decile != Some(decile) {
                self.last_decile = Some(decile);
                let _ = writeln!(err, "{line}");
            }
        }
    }

    /// End the display: on a terminal, move to a new line; print the total time.
    pub fn finish(&mut self) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty && self.last_len > 0 {
            let _ = writeln!(err);
        }
        let _ = writeln!(
            err,
            "done in {}",
            format_eta(self.start.elapsed().as_secs_f64())
        );
        self.last_len = 0;
    }
}

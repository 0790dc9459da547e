//! Timing: a stopwatch that waits for the device at both ends, the sampling budget, and
//! the statistics of a row (median, p10, p90).

use std::time::{Duration, Instant};

use crate::device::Device;
use crate::error::Result;

/// Brackets the timed part of one call; on cuda/emu it synchronizes the device at start
/// and stop, so queued work is neither charged to the row nor left out of it.
pub struct Stopwatch {
    device: Device,
    started: Option<Instant>,
    elapsed: Duration,
}

impl Stopwatch {
    pub fn new(device: &Device) -> Stopwatch {
        Stopwatch {
            device: device.clone(),
            started: None,
            elapsed: Duration::ZERO,
        }
    }
    fn sync(&self) -> Result<()> {
        match self.device.simt() {
            Some(simt) => simt.runtime().synchronize(),
            None => Ok(()),
        }
    }
    pub fn start(&mut self) -> Result<()> {
        self.sync()?;
        self.started = Some(Instant::now());
        Ok(())
    }
    pub fn stop(&mut self) -> Result<()> {
        self.sync()?;
        if let Some(t) = self.started.take() {
            self.elapsed += t.elapsed();
        }
        Ok(())
    }
    /// The bracketed time so far, and reset.
    pub fn take(&mut self) -> Duration {
        std::mem::take(&mut self.elapsed)
    }
}

/// How many samples a row takes: at least `min_samples` and `min_time` of them, at most
/// `max_samples` or `max_time`, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub min_samples: usize,
    pub max_samples: usize,
    pub min_time: Duration,
    pub max_time: Duration,
}

impl Budget {
    pub fn full() -> Budget {
        Budget {
            min_samples: 5,
            max_samples: 200,
            min_time: Duration::from_millis(400),
            max_time: Duration::from_secs(3),
        }
    }
    /// CI-sized: every row still measured, with 3 samples or 50 ms.
    pub fn quick() -> Budget {
        Budget {
            min_samples: 3,
            max_samples: 20,
            min_time: Duration::from_millis(50),
            max_time: Duration::from_millis(500),
        }
    }
    pub fn done(&self, samples: usize, spent: Duration) -> bool {
        samples >= self.max_samples
            || (samples >= self.min_samples && spent >= self.min_time)
            || (samples >= 1 && spent >= self.max_time)
    }
}

/// Median and the 10th/90th percentiles (nearest rank) of `samples`, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if s.is_empty() {
                f64::NAN
            } else {
                s[((s.len() - 1) as f64 * q).round() as usize]
            }
        };
        let median = if s.len().is_multiple_of(2) && !s.is_empty() {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        } else {
            at(0.5)
        };
        Spread {
            median,
            p10: at(0.1),
            p90: at(0.9),
        }
    }
}

/// Normwise relative error of `got` against `want`: max |got − want| / max |want| (an
/// elementwise ratio would blow up at the zeros every ReLU layer makes). 0 when both are
/// all zeros; infinite when lengths differ or `got` has a NaN where `want` has none.
pub fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        let d = (g - w).abs();
        if d.is_nan() {
            return f64::INFINITY;
        }
        worst = worst.max(d);
    }
    if worst == 0.0 {
        0.0
    } else {
        worst / scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_nearest_rank() {
        let s: Vec<f64> = (1..=11).map(f64::from).rev().collect();
        assert_eq!(
            Spread::of(&s),
            Spread {
                median: 6.0,
                p10: 2.0,
                p90: 10.0
            }
        );
        assert_eq!(Spread::of(&[1.0, 3.0]).median, 2.0);
    }

    #[test]
    fn relative_error_is_normwise_and_catches_nan() {
        assert_eq!(max_rel_err(&[1.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((max_rel_err(&[2.0, 0.5], &[2.0, 0.0]) - 0.25).abs() < 1e-15);
        assert_eq!(max_rel_err(&[f64::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_rel_err(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }

    #[test]
    fn budget_stops_at_either_bound() {
        let b = Budget::quick();
        assert!(!b.done(2, Duration::from_millis(60)));
        assert!(b.done(3, Duration::from_millis(60)));
        assert!(b.done(1, Duration::from_secs(1)));
        assert!(b.done(20, Duration::ZERO));
    }
}

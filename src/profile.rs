//! A cheap op profiler: where the time of a training step goes, by op and direction.
//!
//! Off by default. Op entry points open a [`scope`] (one line: `let _p = profile::scope(
//! "conv2d", Direction::Forward);`), the backward walk opens one around each rule, and the
//! optimizers one around each update. When the profiler is off a scope is one relaxed
//! atomic load and a branch; when on, the *outermost* scope of each thread owns the time:
//! an op that calls other ops (a backward rule running forward ops, an optimizer running
//! elementwise ops) is charged for all of it, and its inner scopes count nothing, so the
//! totals never count a nanosecond twice and sum to at most the wall time measured.
//!
//! On an asynchronous device (cuda) a scope would time only the queueing of its kernels,
//! and the first op that waits for a result would be charged for all the work queued
//! before it. [`set_sync`] installs a wait for the device that the outermost scopes run
//! when they open and close, so each is charged its own kernels' time (at the cost of a
//! device round trip per op: profiled steps run slower than unprofiled ones).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which pass an op's time belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Forward,
    Backward,
    /// An optimizer's parameter update.
    Update,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
            Direction::Update => "update",
        }
    }
}

/// Accumulated time of one (op, direction) while profiling was on.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub op: &'static str,
    pub direction: Direction,
    pub calls: u64,
    pub time: Duration,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// (op, direction) → (calls, time).
type Totals = HashMap<(&'static str, Direction), (u64, Duration)>;
static TOTALS: Mutex<Option<Totals>> = Mutex::new(None);

/// Waits for the device's queued work; see the module doc.
type SyncHook = Box<dyn Fn() + Send + Sync>;
static SYNC: Mutex<Option<SyncHook>> = Mutex::new(None);

/// Install (or with `None` remove) the wait the outermost scopes run at both ends.
pub fn set_sync(hook: Option<SyncHook>) {
    *SYNC.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

fn sync() {
    if let Some(hook) = &*SYNC.lock().unwrap_or_else(|e| e.into_inner()) {
        hook();
    }
}

thread_local! {
    /// Open scopes on this thread (only the outermost one is timed).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Turn profiling on or off (process-wide). Turning it on does not clear the totals.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The totals since the last call, largest time first; clears them.
pub fn take() -> Vec<Entry> {
    let totals = lock().take().unwrap_or_default();
    let mut v: Vec<Entry> = totals
        .into_iter()
        .map(|((op, direction), (calls, time))| Entry {
            op,
            direction,
            calls,
            time,
        })
        .collect();
    v.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then(a.op.cmp(b.op))
            .then(a.direction.cmp(&b.direction))
    });
    v
}

fn lock() -> std::sync::MutexGuard<'static, Option<Totals>> {
    TOTALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A timed region; counts on drop. `None` (free) when profiling is off.
#[must_use = "the scope measures until it is dropped"]
pub struct Scope {
    /// Set only for the outermost scope of the thread.
    timed: Option<(&'static str, Direction, Instant)>,
}

/// Open a scope for `op` in `direction` (see the module doc).
#[inline]
pub fn scope(op: &'static str, direction: Direction) -> Option<Scope> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let depth = DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v
    });
    Some(Scope {
        timed: (depth == 0).then(|| {
            sync();
            (op, direction, Instant::now())
        }),
    })
}

/// [`scope`] in the forward direction (the one-line hook at op entry points).
#[inline]
pub fn forward(op: &'static str) -> Option<Scope> {
    scope(op, Direction::Forward)
}

/// [`scope`] for an optimizer's update.
#[inline]
pub fn update(op: &'static str) -> Option<Scope> {
    scope(op, Direction::Update)
}

impl Drop for Scope {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        if let Some((op, direction, start)) = self.timed {
            sync();
            let elapsed = start.elapsed();
            let mut totals = lock();
            let e = totals
                .get_or_insert_with(HashMap::new)
                .entry((op, direction))
                .or_insert((0, Duration::ZERO));
            e.0 += 1;
            e.1 += elapsed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test owns the process-wide switch, so parallel tests cannot interleave.
    #[test]
    fn outermost_scope_owns_the_time_and_off_costs_nothing() {
        set_enabled(false);
        assert!(scope("x", Direction::Forward).is_none());
        take();
        set_enabled(true);
        {
            let _outer = scope("outer", Direction::Backward);
            std::thread::sleep(Duration::from_millis(20));
            let _inner = scope("inner", Direction::Forward);
            std::thread::sleep(Duration::from_millis(5));
        }
        {
            let _again = scope("outer", Direction::Backward);
        }
        set_enabled(false);
        // Other tests may run ops meanwhile; only this test's names matter.
        let entries = take();
        let mine: Vec<_> = entries
            .iter()
            .filter(|e| e.op == "outer" || e.op == "inner")
            .collect();
        assert_eq!(mine.len(), 1, "inner scopes must not count: {mine:?}");
        assert_eq!(mine[0].op, "outer");
        assert_eq!(mine[0].direction, Direction::Backward);
        assert_eq!(mine[0].calls, 2);
        assert!(mine[0].time >= Duration::from_millis(25));
        assert!(
            take().iter().all(|e| e.op != "outer"),
            "take clears the totals"
        );
    }
}

//! The virtual clock. Simulated time is milliseconds since the world's epoch (the wall
//! time when the world was created). It only moves when told: the controller jumps it
//! to the next due item when nothing else is pending (embedded mode, tests), `sim
//! advance` moves it, and `serve` moves it at a chosen multiple of real time.
//!
//! Simulated time is bounded: it runs at most `MAX_SIM_MS` (1000 years) past the
//! epoch, so that every instant can be written as an RFC 3339 date (year <= 9999) and
//! no sum of times overflows. All arithmetic on it is checked: `sim advance` past the
//! end is refused (`advance_by`), times computed from it (requeues, the next phase of a
//! migration) saturate at the end (`later`), and `--time-scale` is bounded
//! (`check_time_scale`). A world saved with a clock past the end (by an older sectl)
//! is refused on load with a way out (`sectl sim clock reset`, see `World::reset_clock`).

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest simulated time: 1000 years (of 365.25 days) past the world's epoch.
pub const MAX_SIM_MS: u64 = 1000 * 36_525 * 864_000;
/// The largest `--time-scale`: 10,000 simulated seconds per real second (the clock
/// then reaches its end after about 36 real days).
pub const MAX_TIME_SCALE: f64 = 10_000.0;

/// Simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Clock {
    /// Wall time (ms since 1970) that simulated time 0 stands for.
    pub epoch_unix_ms: u64,
    /// Simulated milliseconds since the epoch.
    pub now_ms: u64,
}

/// `at + ms`, but never past the end of simulated time (for times computed from the
/// clock: a requeue, the next phase of a migration).
pub fn later(at: u64, ms: u64) -> u64 {
    at.saturating_add(ms).min(MAX_SIM_MS)
}

/// Checks a `--time-scale`: a finite number from 0 (the clock moves only with `sim
/// advance`) to `MAX_TIME_SCALE`.
pub fn check_time_scale(scale: f64) -> Result<f64, String> {
    if scale.is_finite() && (0.0..=MAX_TIME_SCALE).contains(&scale) {
        Ok(scale)
    } else {
        Err(format!(
            "must be a number from 0 (the clock moves only with `sim advance`) to {MAX_TIME_SCALE} \
             (simulated seconds per real second), got {scale}"
        ))
    }
}

impl Clock {
    /// A clock whose time 0 is now.
    pub fn starting_now() -> Clock {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Clock { epoch_unix_ms: ms - ms % 1000, now_ms: 0 }
    }

    /// Simulated time `at` as RFC 3339 (UTC, milliseconds). A time that cannot be
    /// written as a date (never for a clock that passed `check`) is shown as an offset.
    pub fn rfc3339_at(&self, at: u64) -> String {
        self.epoch_unix_ms
            .checked_add(at)
            .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
            .filter(|t| *t < UNIX_EPOCH + Duration::from_secs(253_402_300_800)) // 10000-01-01
            .map(|t| humantime::format_rfc3339_millis(t).to_string())
            .unwrap_or_else(|| format!("epoch+{at}ms"))
    }

    /// Now as RFC 3339.
    pub fn rfc3339(&self) -> String {
        self.rfc3339_at(self.now_ms)
    }

    /// Moves the clock forward to `t` (never back, never past the end).
    pub fn advance_to(&mut self, t: u64) {
        self.now_ms = self.now_ms.max(t.min(MAX_SIM_MS));
    }

    /// Moves the clock forward by `ms`, or says why it cannot (past the end of
    /// simulated time); then the clock is unchanged.
    pub fn advance_by(&mut self, ms: u64) -> Result<u64, String> {
        match self.now_ms.checked_add(ms).filter(|t| *t <= MAX_SIM_MS) {
            Some(t) => {
                self.now_ms = t;
                Ok(t)
            }
            None => Err(format!(
                "the simulated clock runs at most 1000 years past its start ({}); it is at {}, so it can \
                 advance by at most {}",
                self.rfc3339_at(0),
                self.rfc3339(),
                humantime::format_duration(Duration::from_secs((MAX_SIM_MS.saturating_sub(self.now_ms)) / 1000))
            )),
        }
    }

    /// Checks a clock read from a store: its time within `MAX_SIM_MS`, and its end a
    /// date that can be written.
    pub fn check(&self) -> Result<(), String> {
        let writable = self.epoch_unix_ms.checked_add(MAX_SIM_MS).is_some_and(|ms| ms < 253_402_300_800_000);
        if self.now_ms > MAX_SIM_MS || !writable {
            return Err(format!(
                "the simulated clock saved in this store is {} ms past its start (epoch {} ms), beyond the \
                 end of simulated time (1000 years; saved by an older sectl?). Run `sectl sim clock reset` \
                 to set it back to the latest time the world recorded before that",
                self.now_ms, self.epoch_unix_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stops_at_its_end() {
        let mut c = Clock { epoch_unix_ms: 1_780_000_000_000, now_ms: 0 };
        assert!(c.advance_by(8000 * 365 * 86_400_000).unwrap_err().contains("at most 1000 years"));
        assert!(c.advance_by(u64::MAX).is_err());
        assert_eq!(c.now_ms, 0, "a refused advance moved the clock");
        assert_eq!(c.advance_by(1000).unwrap(), 1000);
        c.advance_to(u64::MAX);
        assert_eq!(c.now_ms, MAX_SIM_MS);
        assert!(c.rfc3339().starts_with("30"), "{}", c.rfc3339());
        assert_eq!(later(MAX_SIM_MS - 1, u64::MAX), MAX_SIM_MS);
        assert!(c.check().is_ok());
        let bad = Clock { epoch_unix_ms: 1_780_000_000_000, now_ms: 8000 * 365 * 86_400_000 };
        assert!(bad.check().unwrap_err().contains("sectl sim clock reset"));
        assert!(!bad.rfc3339().is_empty(), "formatting a far-future clock must not panic");
        assert_eq!(Clock { epoch_unix_ms: u64::MAX, now_ms: 5 }.rfc3339(), "epoch+5ms");
    }

    #[test]
    fn time_scales() {
        for ok in [0.0, 1.0, 200.0, MAX_TIME_SCALE] {
            assert_eq!(check_time_scale(ok), Ok(ok));
        }
        for bad in [1e12, f64::NAN, f64::INFINITY, -1.0] {
            assert!(check_time_scale(bad).is_err(), "{bad}");
        }
    }
}

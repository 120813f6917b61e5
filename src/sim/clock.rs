//! The virtual clock. Simulated time is milliseconds since the world's epoch (the wall
//! time when the world was created). It only moves when told: the controller jumps it
//! to the next due item when nothing else is pending (embedded mode, tests), `sim
//! advance` moves it, and `serve` moves it at a chosen multiple of real time.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Clock {
    /// Wall time (ms since 1970) that simulated time 0 stands for.
    pub epoch_unix_ms: u64,
    /// Simulated milliseconds since the epoch.
    pub now_ms: u64,
}

impl Clock {
    /// A clock whose time 0 is now.
    pub fn starting_now() -> Clock {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Clock { epoch_unix_ms: ms - ms % 1000, now_ms: 0 }
    }

    /// Simulated time `at` as RFC 3339 (UTC, milliseconds).
    pub fn rfc3339_at(&self, at: u64) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(self.epoch_unix_ms + at);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// Now as RFC 3339.
    pub fn rfc3339(&self) -> String {
        self.rfc3339_at(self.now_ms)
    }

    /// Moves the clock forward to `t` (never back).
    pub fn advance_to(&mut self, t: u64) {
        self.now_ms = self.now_ms.max(t);
    }
}

//! Clocks: the only place the controller reads time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::ports::Clock;

/// Wall-clock time at `speed`× from the moment it was made, on tokio's clock (so tests with
/// paused time control it). Speed 1 is production.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start_ms: i64,
    start: tokio::time::Instant,
    speed: f64,
}

impl TokioClock {
    pub fn new(speed: f64) -> Self {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Self::starting_at(start_ms, speed)
    }

    /// A clock that reads `start_ms` now (tests, replays).
    pub fn starting_at(start_ms: i64, speed: f64) -> Self {
        TokioClock {
            start_ms,
            start: tokio::time::Instant::now(),
            // Bounded so that no sleep overflows: a thousandth to a million times the wall.
            speed: if speed.is_finite() && speed > 0.0 {
                speed.clamp(1e-3, 1e6)
            } else {
                1.0
            },
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

#[async_trait]
impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = self.start.elapsed().as_secs_f64() * 1000.0 * self.speed;
        self.start_ms + elapsed as i64
    }

    async fn sleep(&self, d: Duration) {
        let wall =
            Duration::try_from_secs_f64(d.as_secs_f64() / self.speed).unwrap_or(Duration::MAX);
        // tokio caps a deadline past its far future.
        tokio::time::sleep(wall).await;
    }
}

/// A clock moved by hand: the simulator's virtual time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(now_ms)),
        }
    }

    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    async fn sleep(&self, d: Duration) {
        self.advance(d);
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scaled_clock_runs_at_its_speed_on_paused_time() {
        let c = TokioClock::starting_at(1_000, 60.0);
        assert_eq!(c.now_ms(), 1_000);
        c.sleep(Duration::from_secs(60)).await; // one real second
        assert_eq!(c.now_ms(), 61_000);
    }
}

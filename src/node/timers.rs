//! The replica's timers, as the node task runs them: a small queue ordered by deadline, awaited
//! through one sleep. The replica arms each kind at most once at a time, so it stays tiny.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::core::replica::Timer;

pub(super) struct Timers {
    queue: BinaryHeap<Reverse<(Instant, Timer)>>,
    sleep: Pin<Box<Sleep>>,
}

impl Timers {
    pub fn new() -> Self {
        Timers { queue: BinaryHeap::new(), sleep: Box::pin(tokio::time::sleep(Duration::ZERO)) }
    }

    pub fn arm(&mut self, after: Duration, timer: Timer) {
        self.queue.push(Reverse((Instant::now() + after, timer)));
    }

    /// The next timer to fire. Cancel-safe: a timer leaves the queue only when returned.
    pub async fn next(&mut self) -> Timer {
        let Some(&Reverse((at, _))) = self.queue.peek() else {
            return std::future::pending().await;
        };
        if self.sleep.deadline() != at {
            self.sleep.as_mut().reset(at);
        }
        self.sleep.as_mut().await;
        self.queue.pop().expect("peeked above").0 .1
    }
}

//! How consumers wait for new events: the log publishes its high-water mark
//! on a watch channel after every durable append, and a poll sleeps on that
//! channel, not on a timer. The local backends (memory, embedded) see every
//! append; on Iggy the channel carries the appends this process made, and
//! polls still look on a timer for those of other producers.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::Offset;

/// The high-water mark, published to every waiting consumer.
#[derive(Debug)]
pub(crate) struct HighWaterMark {
    sender: watch::Sender<Offset>,
}

impl HighWaterMark {
    pub(crate) fn new(initial: Offset) -> Self {
        Self {
            sender: watch::Sender::new(initial),
        }
    }

    /// Publishes a new high-water mark; it never moves back.
    pub(crate) fn advance(&self, to: Offset) {
        self.sender.send_if_modified(|current| {
            let grew = to > *current;
            if grew {
                *current = to;
            }
            grew
        });
    }

    /// A receiver that sees every later advance.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Offset> {
        self.sender.subscribe()
    }

    /// The last published high-water mark.
    pub(crate) fn get(&self) -> Offset {
        *self.sender.borrow()
    }

    /// Waits until the log holds `position` or `timeout` passes; returns
    /// whether it does.
    pub(crate) async fn wait_beyond(&self, position: Offset, timeout: Duration) -> bool {
        let mut receiver = self.sender.subscribe();
        let deadline = Instant::now() + timeout;
        let grew = receiver.wait_for(|&high_water_mark| high_water_mark > position);
        matches!(tokio::time::timeout_at(deadline, grew).await, Ok(Ok(_)))
    }
}

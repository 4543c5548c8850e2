//! The sliding replay window over transport counters (RFC 6479's idea with a
//! single 64-bit word): each side accepts a counter once, in any order
//! within the last [`ReplayWindow::SIZE`] counters.
//!
//! Check before decrypting (cheap refusal of duplicates and old counters),
//! mark after the datagram authenticated (so a forged counter cannot move
//! the window).

/// Counters seen on one receiving direction of a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One past the highest counter accepted (0: none yet).
    next: u64,
    /// Bit `i` set: counter `next - 1 - i` was accepted.
    seen: u64,
}

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The counter was already accepted.
    #[error("counter {counter} was already received")]
    Duplicate {
        /// The counter.
        counter: u64,
    },
    /// The counter is older than the window reaches.
    #[error("counter {counter} is older than the replay window")]
    TooOld {
        /// The counter.
        counter: u64,
    },
    /// The counter is at or past the limit where sessions must end.
    #[error("counter {counter} is past the session limit")]
    Exhausted {
        /// The counter.
        counter: u64,
    },
}

impl ReplayWindow {
    /// How many counters behind the highest one are still accepted.
    pub const SIZE: u64 = 64;

    /// Counters at or above this are refused: a session must have been
    /// replaced long before (WireGuard's REJECT_AFTER_MESSAGES).
    pub const LIMIT: u64 = u64::MAX - (1 << 13);

    /// An empty window.
    pub const fn new() -> Self {
        Self { next: 0, seen: 0 }
    }

    /// A window restored from [`Self::to_parts`].
    pub const fn from_parts(next: u64, seen: u64) -> Self {
        Self { next, seen }
    }

    /// The window's state as (one past the highest accepted, bitmap), for
    /// saving.
    pub const fn to_parts(&self) -> (u64, u64) {
        (self.next, self.seen)
    }

    /// Whether `counter` would be accepted; changes nothing.
    pub const fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= Self::LIMIT {
            return Err(ReplayError::Exhausted { counter });
        }
        if counter >= self.next {
            return Ok(());
        }
        let age = self.next - 1 - counter;
        if age >= Self::SIZE {
            return Err(ReplayError::TooOld { counter });
        }
        if self.seen & (1 << age) != 0 {
            return Err(ReplayError::Duplicate { counter });
        }
        Ok(())
    }

    /// Marks `counter` as received; call only after the datagram
    /// authenticated.
    pub fn mark(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        if counter >= self.next {
            let shift = counter - self.next + 1;
            self.seen = if shift >= Self::SIZE {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.next = counter + 1;
        } else {
            self.seen |= 1 << (self.next - 1 - counter);
        }
        Ok(())
    }

    /// One past the highest counter accepted.
    pub const fn next(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_is_refused() {
        let mut window = ReplayWindow::new();
        assert_eq!(window.mark(0), Ok(()));
        assert_eq!(window.mark(0), Err(ReplayError::Duplicate { counter: 0 }));
        assert_eq!(window.mark(5), Ok(()));
        assert_eq!(window.check(5), Err(ReplayError::Duplicate { counter: 5 }));
    }

    #[test]
    fn out_of_order_counters_within_the_window_are_accepted_once() {
        let mut window = ReplayWindow::new();
        window.mark(10).expect("fresh");
        for counter in [3, 9, 0, 7] {
            assert_eq!(window.mark(counter), Ok(()), "{counter}");
        }
        for counter in [3, 9, 0, 7, 10] {
            assert_eq!(
                window.mark(counter),
                Err(ReplayError::Duplicate { counter })
            );
        }
        assert_eq!(window.mark(8), Ok(()));
    }

    #[test]
    fn a_counter_older_than_the_window_is_refused() {
        let mut window = ReplayWindow::new();
        window.mark(100).expect("fresh");
        assert_eq!(window.mark(100 - 63), Ok(()));
        assert_eq!(
            window.mark(100 - 64),
            Err(ReplayError::TooOld { counter: 36 })
        );
        // A jump past the window forgets everything before it.
        window.mark(1_000).expect("fresh");
        assert_eq!(window.check(999), Ok(()));
        assert_eq!(window.check(900), Err(ReplayError::TooOld { counter: 900 }));
    }

    #[test]
    fn a_refused_check_changes_nothing_and_parts_round_trip() {
        let mut window = ReplayWindow::new();
        window.mark(1).expect("fresh");
        window.mark(3).expect("fresh");
        let before = window;
        assert!(window.mark(1).is_err());
        assert_eq!(window, before);
        let (next, seen) = window.to_parts();
        assert_eq!(ReplayWindow::from_parts(next, seen), window);
        assert_eq!(
            window.check(ReplayWindow::LIMIT),
            Err(ReplayError::Exhausted {
                counter: ReplayWindow::LIMIT
            })
        );
    }
}

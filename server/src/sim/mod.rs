//! The simulator: nodes (engine and sequencer on the in-memory store) and
//! clients in one process, on virtual time, joined by links that can drop,
//! delay, duplicate and reorder what they carry. Protocol tests of
//! federation, devices and the desk are written on it, as quinn-proto's are
//! on its `Pair`.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The output of `future`, which must be ready at its first poll: the
/// in-memory store never waits, so everything the simulator drives is.
///
/// # Panics
/// If `future` is pending: something the simulator drives waited on I/O.
pub fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the simulator drove a future that waits"),
    }
}

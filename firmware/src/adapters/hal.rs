//! embedded-hal 1.0 adapters: waiting for the session's deadline with a
//! `DelayNs`, a service button that opens a configured conversation, and a
//! notification LED lit while an agent message waits unread.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use kanal_proto::device::Diagnostic;
use rand_core::{CryptoRng, RngCore};

use crate::session::{DeviceSession, SendError};
use crate::time::Instant;

/// Presses closer together than this are one press (contact bounce), in
/// milliseconds.
pub const DEBOUNCE_MS: u64 = 50;

/// Blocks until the session's next deadline or for at most `max_ms`
/// (so the caller can check its socket and pins); returns the milliseconds
/// waited. With no deadline it waits `max_ms`.
pub fn wait_for_deadline<D: DelayNs, R: RngCore + CryptoRng, const N: usize>(
    delay: &mut D,
    session: &DeviceSession<R, N>,
    now: Instant,
    max_ms: u32,
) -> u32 {
    let wait = match session.poll_timeout() {
        Some(deadline) => deadline.since(now).min(u64::from(max_ms)) as u32,
        None => max_ms,
    };
    if wait > 0 {
        delay.delay_ms(wait);
    }
    wait
}

/// The conversation a service button opens.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRequest<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its first message.
    pub text: &'a str,
    /// Diagnostics to attach.
    pub diagnostics: &'a [Diagnostic<'a>],
}

/// Why the button could not open a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ButtonError<E: core::fmt::Debug> {
    /// Reading the pin failed.
    #[error("pin: {0:?}")]
    Pin(E),
    /// The session refused the request.
    #[error("session: {0}")]
    Send(#[from] SendError),
}

/// A push button that opens a service conversation when pressed.
pub struct ServiceButton<P> {
    pin: P,
    active_low: bool,
    was_active: bool,
    last_press: Option<Instant>,
}

impl<P: InputPin> ServiceButton<P> {
    /// A button on `pin`; `active_low` when pressing pulls the pin low.
    pub fn new(pin: P, active_low: bool) -> Self {
        Self {
            pin,
            active_low,
            was_active: false,
            last_press: None,
        }
    }

    /// Samples the pin; on a new press, opens `request` and returns its
    /// device message id.
    pub fn check<R: RngCore + CryptoRng, const N: usize>(
        &mut self,
        session: &mut DeviceSession<R, N>,
        now: Instant,
        request: &ServiceRequest<'_>,
    ) -> Result<Option<u32>, ButtonError<P::Error>> {
        let high = self.pin.is_high().map_err(ButtonError::Pin)?;
        let active = high != self.active_low;
        let pressed = active && !self.was_active;
        self.was_active = active;
        if !pressed {
            return Ok(None);
        }
        if self
            .last_press
            .is_some_and(|last| now.since(last) < DEBOUNCE_MS)
        {
            return Ok(None);
        }
        self.last_press = Some(now);
        let id = session.open(now, request.topic, request.text, request.diagnostics)?;
        Ok(Some(id))
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

/// An LED lit while an agent message waits unread.
pub struct NotificationLed<P> {
    pin: P,
}

impl<P: OutputPin> NotificationLed<P> {
    /// An LED on `pin` (lit when high).
    pub fn new(pin: P) -> Self {
        Self { pin }
    }

    /// Lights or clears the LED from the session's state.
    pub fn update<R: RngCore + CryptoRng, const N: usize>(
        &mut self,
        session: &DeviceSession<R, N>,
    ) -> Result<(), P::Error> {
        if session.has_unread() {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

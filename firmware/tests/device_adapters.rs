//! The embedded adapters with in-memory pins, delay and UDP stack: the
//! button opens the configured conversation once per press, the LED follows
//! unread mail, and a `UdpLink` drives a whole exchange.

mod support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use embedded_nal::UdpClientStack;
use kanal_firmware::adapters::hal::{
    NotificationLed, ServiceButton, ServiceRequest, wait_for_deadline,
};
use kanal_firmware::adapters::nal::UdpLink;
use kanal_firmware::{Diagnostic, Event, Instant};
use support::{Pair, Responder, Seen, device, server};

#[derive(Clone, Default)]
struct Pin(Rc<RefCell<bool>>);

impl ErrorType for Pin {
    type Error = Infallible;
}

impl InputPin for Pin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(*self.0.borrow())
    }
    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!*self.0.borrow())
    }
}

impl OutputPin for Pin {
    fn set_high(&mut self) -> Result<(), Infallible> {
        *self.0.borrow_mut() = true;
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        *self.0.borrow_mut() = false;
        Ok(())
    }
}

#[derive(Default)]
struct Delay(u64);

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        self.0 += u64::from(ns);
    }
}

const REQUEST: ServiceRequest<'static> = ServiceRequest {
    topic: "service",
    text: "Service button pressed",
    diagnostics: &[Diagnostic {
        key: "hours",
        value: "1200",
    }],
};

#[test]
fn a_press_opens_the_configured_conversation_once() {
    let mut pair = Pair::new(device(1), server());
    let level = Pin::default();
    // Active low: released is high.
    *level.0.borrow_mut() = true;
    let mut button = ServiceButton::new(level.clone(), true);
    let mut opened = Vec::new();
    for (ms, high) in [
        (0, true),
        (10, false),
        (20, true),
        (30, false),
        (40, false),
        (500, true),
        (600, false),
    ] {
        *level.0.borrow_mut() = high;
        if let Some(id) = button
            .check(&mut pair.device, Instant(ms), &REQUEST)
            .expect("ok")
        {
            opened.push((ms, id));
        }
    }
    // The bounce at 30 ms is ignored; the press at 600 ms counts.
    assert_eq!(opened, vec![(10, 1), (600, 2)]);
    pair.drive();
    assert_eq!(pair.server.acted, vec![1, 2]);
}

#[test]
fn the_led_is_lit_while_an_agent_message_waits_unread() {
    let (mut pair, conversation) = support::opened_pair();
    let led_level = Pin::default();
    let mut led = NotificationLed::new(led_level.clone());
    led.update(&pair.device).expect("ok");
    assert!(!*led_level.0.borrow());

    let key = support::public_of(&support::DEVICE_SECRET);
    pair.server.post(&key, conversation, "Done", &[]);
    pair.device.poll_mailbox(pair.now).expect("room");
    pair.drive();
    led.update(&pair.device).expect("ok");
    assert!(*led_level.0.borrow());

    pair.device.mark_read();
    led.update(&pair.device).expect("ok");
    assert!(!*led_level.0.borrow());
}

#[test]
fn waiting_for_the_deadline_is_bounded() {
    let mut session = device(2);
    let mut delay = Delay::default();
    assert_eq!(
        wait_for_deadline(&mut delay, &session, Instant(0), 250),
        250
    );
    session.open(Instant(0), "t", "x", &[]).expect("room");
    let mut buf = [0u8; 512];
    session.poll_transmit(Instant(0), &mut buf).expect("ok");
    // The handshake retry is due at 1,000 ms.
    assert_eq!(
        wait_for_deadline(&mut delay, &session, Instant(400), 5_000),
        600
    );
    assert_eq!(delay.0, 850 * 1_000_000);
}

/// A UDP stack whose one socket talks to the responder in memory.
struct Loopback {
    server: Responder,
    addr: SocketAddr,
    inbox: VecDeque<Vec<u8>>,
}

impl UdpClientStack for Loopback {
    type UdpSocket = ();
    type Error = Infallible;

    fn socket(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn connect(&mut self, _: &mut (), _: SocketAddr) -> Result<(), Infallible> {
        Ok(())
    }
    fn send(&mut self, _: &mut (), buffer: &[u8]) -> nb::Result<(), Infallible> {
        for (_, answer) in self.server.handle(self.addr, buffer) {
            self.inbox.push_back(answer);
        }
        Ok(())
    }
    fn receive(
        &mut self,
        _: &mut (),
        buffer: &mut [u8],
    ) -> nb::Result<(usize, SocketAddr), Infallible> {
        let datagram = self.inbox.pop_front().ok_or(nb::Error::WouldBlock)?;
        buffer[..datagram.len()].copy_from_slice(&datagram);
        Ok((datagram.len(), "192.0.2.50:7447".parse().expect("address")))
    }
    fn close(&mut self, _: ()) -> Result<(), Infallible> {
        Ok(())
    }
}

#[test]
fn a_udp_link_carries_an_open_and_its_answer() {
    let stack = Loopback {
        server: server(),
        addr: "192.0.2.10:40000".parse().expect("address"),
        inbox: VecDeque::new(),
    };
    let mut link =
        UdpLink::connect(stack, "192.0.2.50:7447".parse().expect("address")).expect("ok");
    let mut session = device(3);
    let id = session.open(Instant(0), "t", "x", &[]).expect("room");
    assert_eq!(link.flush(&mut session, Instant(0)).expect("ok"), 1);
    let event = link
        .receive(&mut session, Instant(5))
        .expect("ok")
        .map(Seen::from);
    assert_eq!(
        event,
        Some(Seen::Opened {
            id,
            conversation: 100
        })
    );
    assert!(matches!(link.receive(&mut session, Instant(5)), Ok(None)));
    let stack = link.close().expect("ok");
    assert_eq!(stack.server.acted, vec![id]);
    let _: Option<Event<'_>> = None;
}

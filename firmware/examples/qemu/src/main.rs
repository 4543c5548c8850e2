//! A washing machine's service link, on a Cortex-M3 under QEMU: at boot it
//! opens a service conversation ("Filter clogged, error E42", with its
//! diagnostics) over its UART, then polls its mailbox and prints each
//! agent message with its quick replies on the console (semihosting). The
//! UART carries SLIP-framed datagrams; on the host, kanal-serial-bridge
//! forwards them to a real kanald's device gateway.
//!
//! The keys and the RNG seed come from the provisioning page
//! ([`provision`]), not from the image. After the number of agent messages
//! the page names, it prints what it measured (peak stack) and exits.
#![no_std]
#![no_main]

mod board;
mod provision;
mod stack;

use core::fmt::Write as _;

use cortex_m::singleton;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use kanal_firmware::adapters::slip::{self, SlipDecoder};
use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::{DeviceConfig, DeviceSession, Diagnostic, Event, Instant};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use board::{Clock, Uart};
use provision::Provision;

/// Unanswered requests the session holds.
const OUTBOX: usize = 4;
/// The firmware version, reported with every conversation it opens.
const VERSION: &str = env!("CARGO_PKG_VERSION");

type Session = DeviceSession<ChaCha20Rng, OUTBOX>;

/// What the loop works with: the session and its buffers, in statics.
struct Device {
    session: &'static mut Session,
    tx: &'static mut [u8; MAX_DATAGRAM],
    decoder: &'static mut SlipDecoder<MAX_DATAGRAM>,
    clock: Clock,
    uart: Uart,
    poll_ms: u32,
    exit_after: u32,
}

#[entry]
fn main() -> ! {
    stack::paint();
    let device = boot();
    let boot_peak = stack::peak();
    // The loop's own figure: boot's frames (the session built before it
    // moves into its static) are gone.
    stack::paint();
    run(device, boot_peak)
}

/// Reads the provisioning page, starts the clock and the UART, and builds
/// the session in its static. Not inlined: its temporaries leave the stack
/// when it returns.
#[inline(never)]
fn boot() -> Device {
    let Some(page) = Provision::read() else {
        hprintln!(
            "kanal: no provisioning page at {:#x}: nothing to connect with",
            provision::PAGE
        );
        exit(false);
    };
    let core = cortex_m::Peripherals::take().expect("taken once, at boot");
    let config = DeviceConfig::new(page.device_secret, page.server_public);
    let rng = ChaCha20Rng::from_seed(page.seed);
    let device = Device {
        session: singleton!(: Session = DeviceSession::new(config, rng)).expect("made once"),
        tx: singleton!(: [u8; MAX_DATAGRAM] = [0; MAX_DATAGRAM]).expect("made once"),
        decoder: singleton!(: SlipDecoder<MAX_DATAGRAM> = SlipDecoder::new()).expect("made once"),
        clock: Clock::start(core.SYST),
        uart: Uart::init(),
        poll_ms: page.poll_ms,
        exit_after: page.exit_after,
    };
    let mut key = Hex::<64>::new();
    for byte in device.session.public_key() {
        let _ = write!(key, "{byte:02x}");
    }
    hprintln!("kanal: device {}", key.as_str());
    device
}

/// Opens the conversation, then serves the line and polls the mailbox.
fn run(device: Device, boot_peak: usize) -> ! {
    let Device {
        session,
        tx,
        decoder,
        clock,
        mut uart,
        poll_ms,
        exit_after,
    } = device;
    let diagnostics = [
        Diagnostic {
            key: "err",
            value: "E42",
        },
        Diagnostic {
            key: "fw",
            value: VERSION,
        },
    ];
    let open = session
        .open(
            clock.now(),
            "filter",
            "Filter clogged, error E42",
            &diagnostics,
        )
        .expect("an empty outbox takes the open");

    let mut opened = false;
    let mut received = 0u32;
    let mut next_poll = Instant(0);
    loop {
        let now = clock.now();
        while let Some(len) = session
            .poll_transmit(now, tx)
            .expect("the buffer is MAX_DATAGRAM")
        {
            // Straight into the UART: no frame buffer.
            slip::write_frame(&tx[..len], |byte| uart.write(byte));
        }
        if exit_after > 0 && received >= exit_after {
            // Every acknowledgement is on the line: done.
            break;
        }

        let mut idle = true;
        while let Some(byte) = uart.read() {
            idle = false;
            let Some(frame) = decoder.push(byte) else {
                continue;
            };
            match session.handle_datagram(clock.now(), frame) {
                Ok(Some(Event::Opened { id, conversation })) if id == open => {
                    opened = true;
                    hprintln!(
                        "kanal: opened conversation {} at {} ms",
                        conversation,
                        clock.now().0
                    );
                }
                Ok(Some(Event::Message(message))) => {
                    received += 1;
                    hprintln!("kanal: agent: {}", message.text);
                    for (i, reply) in message.replies.iter().enumerate() {
                        hprintln!("kanal:   [{}] {}", i + 1, reply);
                    }
                }
                Ok(Some(Event::Refused { id, code, detail })) => {
                    hprintln!("kanal: request {} refused: code {} ({})", id, code, detail);
                }
                Ok(_) => {}
                // Line noise, a replay, a stale session: dropping is safe.
                Err(_) => {}
            }
            break;
        }

        let now = clock.now();
        if opened && session.outbox_len() == 0 && now >= next_poll {
            // Woken by its timer: asks for mail, as a device does on wake.
            let _ = session.poll_mailbox(now);
            next_poll = now.after_ms(u64::from(poll_ms));
        }
        if idle && session.poll_timeout().is_none_or(|at| at > now) {
            // Until the next SysTick (a millisecond) or UART byte.
            cortex_m::asm::wfi();
        }
    }

    hprintln!(
        "kanal: {} agent messages after {} ms; peak stack {} bytes at boot, {} in the session loop, of {} bytes free",
        received,
        clock.now().0,
        boot_peak,
        stack::peak(),
        stack::room()
    );
    exit(true);
}

/// Ends the emulation (semihosting); on a board without a debugger, halts.
fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("kanal: panic: {}", info);
    exit(false);
}

/// Hex text without an allocator.
struct Hex<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Hex<N> {
    fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> core::fmt::Write for Hex<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

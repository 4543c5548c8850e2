//! A size probe: the device session as firmware would use it, with the
//! radio and the RNG peripheral replaced by volatile memory accesses so the
//! optimiser keeps everything a real product would.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::panic::PanicInfo;
use core::ptr;

use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::{DeviceConfig, DeviceSession, Diagnostic, Event, Instant};
use rand_core::{CryptoRng, RngCore};

const OUTBOX: usize = 4;

/// Stand-ins for peripheral registers.
const RNG_DATA: *const u32 = 0x5006_0808 as *const u32;
const RADIO: *mut u8 = 0x4000_0000 as *mut u8;
const KEYS: *const u8 = 0x0800_f000 as *const u8;

struct HardwareRng;

impl RngCore for HardwareRng {
    fn next_u32(&mut self) -> u32 {
        unsafe { ptr::read_volatile(RNG_DATA) }
    }
    fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(4) {
            let word = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for HardwareRng {}

static mut SESSION: MaybeUninit<DeviceSession<HardwareRng, OUTBOX>> = MaybeUninit::uninit();
static mut DATAGRAM: [u8; MAX_DATAGRAM] = [0; MAX_DATAGRAM];
static mut SAVED: [u8; kanal_firmware::snapshot::saved_len(OUTBOX)] =
    [0; kanal_firmware::snapshot::saved_len(OUTBOX)];

fn key(offset: usize) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = unsafe { ptr::read_volatile(KEYS.add(offset + i)) };
    }
    key
}

fn radio_send(bytes: &[u8]) {
    for &byte in bytes {
        unsafe { ptr::write_volatile(RADIO, byte) };
    }
}

fn radio_receive(buf: &mut [u8]) -> usize {
    let len = usize::from(unsafe { ptr::read_volatile(RADIO) }).min(buf.len());
    for byte in &mut buf[..len] {
        *byte = unsafe { ptr::read_volatile(RADIO) };
    }
    len
}

type Session = DeviceSession<HardwareRng, OUTBOX>;

#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let session = boot();
    let mut now = 0;
    loop {
        now += 1;
        step(session, Instant(now));
    }
}

/// Builds the session in its static (as a product would at boot).
#[inline(never)]
fn boot() -> &'static mut Session {
    let config = DeviceConfig::new(key(0), key(32));
    let saved = unsafe { &*(&raw const SAVED) };
    let session = unsafe { (*(&raw mut SESSION)).write(DeviceSession::new(config, HardwareRng)) };
    // Waking from deep sleep restores; a first boot (or damaged state)
    // starts afresh.
    let _ = session.restore(saved, Instant(0));
    let diagnostics = [Diagnostic {
        key: "err",
        value: "E42",
    }];
    let _ = session.open(Instant(0), "filter", "Filter clogged", &diagnostics);
    session
}

/// One turn of the main loop: send what is due, take one datagram, save
/// before sleeping.
#[inline(never)]
fn step(session: &mut Session, now: Instant) {
    let datagram = unsafe { &mut *(&raw mut DATAGRAM) };
    let saved = unsafe { &mut *(&raw mut SAVED) };
    while let Ok(Some(len)) = session.poll_transmit(now, datagram) {
        radio_send(&datagram[..len]);
    }
    let len = radio_receive(datagram);
    let opened = match session.handle_datagram(now, &datagram[..len]) {
        Ok(Some(Event::Message(message))) => {
            radio_send(message.text.as_bytes());
            None
        }
        Ok(Some(Event::Opened { conversation, .. })) => Some(conversation),
        _ => None,
    };
    if let Some(conversation) = opened {
        let _ = session.append(now, conversation, "ok", None);
    }
    if session.poll_timeout().is_none() {
        let _ = session.save(saved);
        let _ = session.poll_mailbox(now);
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

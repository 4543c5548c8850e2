//! The LM3S6965's peripherals this example uses: UART0 (a PL011) for the
//! datagrams and SysTick for the session's milliseconds.

use core::cell::Cell;
use core::ptr::{read_volatile, write_volatile};

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use kanal_firmware::Instant;

/// The core clock after reset (the PLL bypassed): 12.5 MHz.
const CORE_HZ: u32 = 12_500_000;

/// System control: run-mode clock gating of UART0 and GPIO port A.
const SYSCTL_RCGC1: *mut u32 = 0x400F_E104 as *mut u32;
const SYSCTL_RCGC2: *mut u32 = 0x400F_E108 as *mut u32;
/// GPIO port A: PA0/PA1 carry U0Rx/U0Tx.
const GPIOA_AFSEL: *mut u32 = 0x4000_4420 as *mut u32;
const GPIOA_DEN: *mut u32 = 0x4000_451C as *mut u32;

/// UART0's registers.
const UART0: usize = 0x4000_C000;
const DR: *mut u32 = UART0 as *mut u32;
const FR: *const u32 = (UART0 + 0x18) as *const u32;
const IBRD: *mut u32 = (UART0 + 0x24) as *mut u32;
const FBRD: *mut u32 = (UART0 + 0x28) as *mut u32;
const LCRH: *mut u32 = (UART0 + 0x2C) as *mut u32;
const CTL: *mut u32 = (UART0 + 0x30) as *mut u32;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;

/// UART0 at 115,200 baud, 8N1, with its FIFOs on.
pub struct Uart(());

impl Uart {
    /// Turns UART0 on. Call once.
    pub fn init() -> Self {
        // SAFETY: these are the LM3S6965's documented register addresses;
        // nothing else in this program touches them.
        unsafe {
            write_volatile(SYSCTL_RCGC1, read_volatile(SYSCTL_RCGC1) | 1);
            write_volatile(SYSCTL_RCGC2, read_volatile(SYSCTL_RCGC2) | 1);
            write_volatile(GPIOA_AFSEL, read_volatile(GPIOA_AFSEL) | 0b11);
            write_volatile(GPIOA_DEN, read_volatile(GPIOA_DEN) | 0b11);
            write_volatile(CTL, 0);
            // 12.5 MHz / (16 × 115,200) = 6.78: 6 and 0.78 × 64 = 50.
            write_volatile(IBRD, 6);
            write_volatile(FBRD, 50);
            // 8 data bits, FIFOs enabled.
            write_volatile(LCRH, 0x70);
            // UART, transmitter and receiver enabled.
            write_volatile(CTL, 0x301);
        }
        Self(())
    }

    /// The next received byte, if one waits.
    pub fn read(&mut self) -> Option<u8> {
        // SAFETY: UART0's registers, owned by this value.
        unsafe {
            if read_volatile(FR) & FR_RXFE != 0 {
                return None;
            }
            // The low 8 bits are the data, the next 4 its error flags.
            let word = read_volatile(DR);
            Some((word & 0xFF) as u8)
        }
    }

    /// Sends `byte`, waiting while the transmit FIFO is full.
    pub fn write(&mut self, byte: u8) {
        // SAFETY: UART0's registers, owned by this value.
        unsafe {
            while read_volatile(FR) & FR_TXFF != 0 {}
            write_volatile(DR, u32::from(byte));
        }
    }
}

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Milliseconds since boot, counted by SysTick's interrupt.
pub struct Clock(());

impl Clock {
    /// Starts SysTick at one interrupt a millisecond.
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(CORE_HZ / 1_000 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self(())
    }

    /// The time now, for the session.
    pub fn now(&self) -> Instant {
        Instant(interrupt::free(|cs| MILLIS.borrow(cs).get()))
    }
}

#[exception]
fn SysTick() {
    interrupt::free(|cs| {
        let millis = MILLIS.borrow(cs);
        millis.set(millis.get() + 1);
    });
}

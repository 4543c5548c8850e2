//! Peak stack, measured by painting: fill the free stack with a pattern,
//! run, and find the deepest word the pattern no longer holds.

use core::ptr::{read_volatile, write_volatile};

const PAINT: u32 = 0xC5AC_CE55;
/// Left unpainted below the caller's stack pointer, for this function's
/// own frame.
const MARGIN: usize = 64;

unsafe extern "C" {
    /// The end of static RAM (cortex-m-rt): the stack may grow down to it.
    static __sheap: u32;
    /// The top of RAM, where the stack starts (cortex-m-rt).
    static _stack_start: u32;
}

fn bottom() -> usize {
    (&raw const __sheap) as usize
}

fn top() -> usize {
    (&raw const _stack_start) as usize
}

/// Paints the free stack below the caller's frame.
#[inline(never)]
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize - MARGIN;
    let mut at = bottom();
    while at < sp {
        // SAFETY: between the end of static RAM and below the current
        // stack pointer, nothing lives.
        unsafe { write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// The deepest the stack has been since the last [`paint`], in bytes from
/// its top.
pub fn peak() -> usize {
    let mut at = bottom();
    // SAFETY: reads within RAM, between the end of statics and the top.
    while at < top() && unsafe { read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    top() - at
}

/// The room the stack has: RAM above the statics.
pub fn room() -> usize {
    top() - bottom()
}

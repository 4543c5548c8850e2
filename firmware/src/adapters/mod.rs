//! Drivers around the sans-IO session for embedded traits and for hosts
//! with an operating system, each behind a feature (SLIP framing for serial
//! lines needs none).

#[cfg(feature = "std")]
pub mod bridge;
#[cfg(feature = "hal")]
pub mod hal;
#[cfg(feature = "nal")]
pub mod nal;
pub mod slip;
#[cfg(feature = "std")]
pub mod udp;

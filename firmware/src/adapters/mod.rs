//! Drivers around the sans-IO session for embedded traits and for hosts
//! with an operating system, each behind a feature.

#[cfg(feature = "hal")]
pub mod hal;
#[cfg(feature = "nal")]
pub mod nal;
#[cfg(feature = "std")]
pub mod udp;

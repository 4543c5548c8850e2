//! Drivers around the sans-IO session for embedded traits, each behind a
//! feature.

#[cfg(feature = "hal")]
pub mod hal;
#[cfg(feature = "nal")]
pub mod nal;

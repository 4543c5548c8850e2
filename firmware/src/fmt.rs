//! Logging through `defmt` or `log`, chosen by feature; without either,
//! the macros compile to nothing (their arguments are still type-checked).

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("enable at most one of the `defmt` and `log` features");

macro_rules! debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::debug!($($arg)*);
        #[cfg(feature = "log")]
        log::debug!($($arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($($arg)*);
        }
    }};
}

macro_rules! log_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::warn!($($arg)*);
        #[cfg(feature = "log")]
        log::warn!($($arg)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        {
            let _ = ($($arg)*);
        }
    }};
}

pub(crate) use {debug, log_warn};

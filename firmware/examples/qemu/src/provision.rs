//! The provisioning page: what the factory writes into the last 4 KiB of
//! flash, outside the firmware image, so one image serves every unit.
//!
//! | offset | bytes | content |
//! |---|---|---|
//! | 0 | 4 | magic `KNP1` |
//! | 4 | 32 | the device's static X25519 private key |
//! | 36 | 32 | the server's static X25519 public key |
//! | 68 | 32 | the RNG seed (fresh for every boot; see README.md) |
//! | 100 | 4 | mailbox poll interval, milliseconds, little-endian |
//! | 104 | 4 | exit after this many agent messages (0: run forever), little-endian |

use core::ptr::read_volatile;

/// Where the page is (see memory.x).
pub const PAGE: usize = 0x0003_F000;
const MAGIC: [u8; 4] = *b"KNP1";

/// The provisioned values.
pub struct Provision {
    /// The device's static private key.
    pub device_secret: [u8; 32],
    /// The server's static public key.
    pub server_public: [u8; 32],
    /// The seed of the session's RNG.
    pub seed: [u8; 32],
    /// Mailbox poll interval, milliseconds.
    pub poll_ms: u32,
    /// Exit after this many agent messages; 0: never.
    pub exit_after: u32,
}

fn byte(offset: usize) -> u8 {
    // SAFETY: the page lies inside the board's flash (memory.x), always
    // readable; it holds erased flash (0xFF) when nothing was written.
    unsafe { read_volatile((PAGE + offset) as *const u8) }
}

fn array<const N: usize>(offset: usize) -> [u8; N] {
    core::array::from_fn(|i| byte(offset + i))
}

impl Provision {
    /// Reads the page; `None` when it holds no provisioning.
    pub fn read() -> Option<Self> {
        if array::<4>(0) != MAGIC {
            return None;
        }
        Some(Self {
            device_secret: array(4),
            server_public: array(36),
            seed: array(68),
            poll_ms: u32::from_le_bytes(array(100)),
            exit_after: u32::from_le_bytes(array(104)),
        })
    }
}

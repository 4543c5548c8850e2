//! Kanal's end-to-end tests, one module per area, in one test binary (one
//! link of the whole server instead of one per area: CI's disk and time).
//! nextest still runs every test in a process of its own.

mod admission;
mod backup;
mod bad_input;
mod client_limits;
mod cluster;
mod cluster_processes;
mod control_stream;
mod devices;
mod durability;
mod federation;
mod federation_processes;
mod federation_webpki;
mod handshake_flood;
mod history_paging;
mod idempotent_send;
mod inbox_fanout;
mod invites;
mod login_flood;
mod offline_sync;
mod operator_changes;
mod pipelined_requests;
mod qemu;
mod readme_walkthrough;
mod replay;
mod server_restart;
mod service_conversation;
mod service_desk;
mod slow_reader;
mod stalled_frames;
mod structured_messages;
mod typing_flood;
mod unread_responses;

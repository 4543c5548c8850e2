//! End-to-end tests of Kanal live in `tests/`; this library holds shared harness code.

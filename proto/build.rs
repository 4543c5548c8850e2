//! Compiles `schemas/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates prost types into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schemas");
    if std::env::var_os("CARGO_FEATURE_STD").is_none() {
        return Ok(());
    }
    let descriptors = protox::compile(["kanal.proto"], ["schemas"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    // The federation schema imports the client one: its types are `pb`'s.
    let descriptors = protox::compile(["federation.proto"], ["schemas"])?;
    prost_build::Config::new()
        .bytes(["."])
        .extern_path(".kanal.v1", "crate::pb")
        .compile_fds(descriptors)?;
    Ok(())
}

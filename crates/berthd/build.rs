//! Link options for `berthd` that cut its resident memory.
//!
//! `-z pack-relative-relocs` stores the position-independent binary's relative relocations
//! as DT_RELR bitmaps (glibc 2.36 and newer apply them) instead of a 0.9 MB `.rela.dyn`
//! table that the dynamic loader reads at every start and that then stays resident.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bin=berthd=-Wl,-z,pack-relative-relocs");
    }
}

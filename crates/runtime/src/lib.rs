//! berth-runtime: OCI runtime spec generation, the per-container shim (`berth-shim`)
//! and the async client the engine uses to drive it.
//!
//! The built-in runtime is youki's `libcontainer`; `runc` is supported behind the same
//! interface. Everything that calls into libcontainer runs inside the single-threaded shim.

pub mod spec;

pub use oci_spec;
pub use spec::{
    build_spec, cgroups_path, DeviceSpec, MountSpec, NetnsMode, SeccompMode, SpecError,
    SpecOptions, UserSpec,
};

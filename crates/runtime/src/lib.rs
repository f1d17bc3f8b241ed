//! berth-runtime: OCI runtime spec generation, the per-container shim (`berth-shim`)
//! and the async client the engine uses to drive it.
//!
//! The built-in runtime is youki's `libcontainer`; `runc` is supported behind the same
//! interface. Everything that calls into libcontainer runs inside the single-threaded shim.
//! The engine uses [`build_spec`] to write `config.json`, [`spawn_shim`] to create the
//! container, and [`ShimClient`] for everything after; see [`protocol`] for the wire format.

pub mod cgroup;
pub mod client;
pub mod logs;
pub mod protocol;
pub mod shim;
pub mod spec;
pub mod types;

pub use client::{
    find_shim_binary, spawn_shim, ContainerStatus, ShimClient, ShimError, ShimProcess, ShimState,
};
pub use oci_spec;
pub use spec::{
    build_spec, cgroups_path, DeviceSpec, IdMapping, MountSpec, NetnsMode, SeccompMode, SpecError,
    SpecOptions, UserSpec, UsernsMaps,
};
pub use types::{
    read_exit, CgroupStats, ExecConfig, ExitStatus, LogConfig, LogDriver, RuntimeKind, ShimConfig,
    StateError,
};

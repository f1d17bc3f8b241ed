//! berth-build: the Dockerfile parser and the image builder.
//!
//! The builder drives the engine through the [`BuildHost`] trait, so this crate knows
//! neither HTTP nor the engine's database.

#![deny(missing_docs)]

pub mod builder;
pub mod context;
pub mod host;
pub mod parser;

pub use builder::{BuildError, BuildEvent, BuildOptions, BuildResult, Builder};
pub use context::BuildContext;
pub use host::{
    BaseImage, BuildHost, CacheSharing, CachedStep, HostError, Layer, RunMount, RunSpec, WorkRoot,
};

//! berth-build: the Dockerfile parser and the image builder.
//!
//! The builder drives the engine through the [`BuildHost`] trait, so this crate knows
//! neither HTTP nor the engine's database.

pub mod context;
pub mod parser;
